"""The chat state: cycles by event time, duplicates, revisions, retractions, expiry, tombstones, bounds."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from streams.domain.chat import MAX_LOG, ChatState, Outcome, apply, digest, expire
from streams.domain.contact import UNDEFINED_QUEUE, build_contact, queue_for
from streams.domain.events import ChatEvent

T0 = 1_714_986_000_000
DAY = 86_400_000
EXPIRY = 7 * DAY
TOMBSTONE = 90 * DAY


def ev(kind, t, actor="user", **kw) -> ChatEvent:
    if kind == "message":
        kw.setdefault("message_type", "normal")
        kw.setdefault("message_id", f"m{t}")
    return ChatEvent(integration="acme", conversation_id="c1", kind=kind, at=T0 + t, actor=actor, **kw)


class Emitted:
    """What a consumer holds after folding revisions, with the processor's bookkeeping."""

    def __init__(self) -> None:
        self.final: dict[int, object] = {}
        self.revisions: dict[int, int] = {}

    def take(self, state: ChatState, changes) -> None:
        for change in changes:
            revision = state.emitted.get(change.cycle, [0])[0] + 1
            state.emitted[change.cycle] = [revision, digest(change.closed) if change.closed else None, "q"]
            self.final[change.cycle] = change.closed
            self.revisions[change.cycle] = revision

    def contacts(self) -> list:
        return [closed for _, closed in sorted(self.final.items()) if closed is not None]


def run(events, state=None, out=None):
    out = out or Emitted()
    verdicts = []
    for event in events:
        state, changes, verdict = apply(state, event, EXPIRY)
        out.take(state, changes)
        verdicts.append(verdict)
    return state, out, verdicts


def contacts(closed):
    return [build_contact("acme", "c1", c, queue_for(c, {"g1": "Support"}) or "?", 0) for c in closed]


CHAT = [
    ev("message", 0, "user"),
    ev("assign", 5_000, "system", group_id="g1", agent_id="a1"),
    ev("message", 20_000, "bot"),
    ev("message", 30_000, "agent", actor_id="a1"),
    ev("message", 31_000, "agent", message_type="private", actor_id="a1"),
    ev("message", 40_000, "user"),
    ev("message", 50_000, "agent", actor_id="a1"),
]
RESOLVE = ev("resolve", 60_000, "agent")


def test_a_resolved_chat_gives_one_contact():
    _, out, _ = run(CHAT + [RESOLVE])
    [contact] = contacts(out.contacts())
    assert contact["contact_id"] == "acme:c1:1" and contact["queue"] == "Support" and contact["revision"] == 1
    assert contact["started_at"] == "2024-05-06T09:00:00.000Z"
    assert contact["first_response_at"] == "2024-05-06T09:00:30.000Z"
    assert (contact["wait_seconds"], contact["duration_seconds"]) == (30.0, 60.0)
    assert contact["messages"] == {"user": 2, "agent": 2, "bot": 1, "system": 0, "private": 1}
    assert (contact["agent_id"], contact["resolved_by"], contact["outcome"]) == ("a1", "agent", "resolved")
    assert contact["offered"] and contact["handled"] and contact["retracted"] is False


def test_reopen_and_implicit_reopen_open_new_cycles_keeping_the_group():
    later = [ev("reopen", 70_000, "user"), ev("message", 71_000, "user"), ev("resolve", 80_000, "agent"),
             ev("message", 90_000, "user"), ev("resolve", 95_000, "system")]
    _, out, _ = run(CHAT + [RESOLVE] + later)
    found = contacts(out.contacts())
    assert [c["cycle"] for c in found] == [1, 2, 3]
    assert [c["queue"] for c in found] == ["Support"] * 3
    assert found[1]["started_at"] == "2024-05-06T09:01:10.000Z" and not found[1]["handled"]
    assert found[2]["resolved_by"] == "system"


def test_events_after_a_close_and_duplicates_change_nothing():
    state, out, _ = run(CHAT + [RESOLVE])
    before = out.contacts()
    state, out, verdicts = run([ev("message", 65_000, "agent", actor_id="a1"), CHAT[3], RESOLVE], state, out)
    assert out.contacts() == before and out.revisions == {1: 1}
    assert verdicts == [Outcome.AFTER_CLOSE, Outcome.DUPLICATE, Outcome.DUPLICATE]


def test_a_late_event_inside_an_emitted_cycle_revises_it():
    state, out, _ = run(CHAT + [RESOLVE])
    state, out, verdicts = run([ev("message", 10_000, "user", message_id="late")], state, out)
    assert verdicts == [Outcome.REVISED] and out.revisions == {1: 2}
    assert out.contacts()[0].counts[0] == 3


def test_deleted_spam_and_groupless_chats_go_to_undefined_queue():
    _, deleted, _ = run(CHAT + [ev("terminal", 60_000, "agent", status="deleted")])
    _, groupless, _ = run([ev("message", 0), ev("resolve", 1_000, "agent")])
    assert [c["queue"] for c in contacts(deleted.contacts() + groupless.contacts())] == [UNDEFINED_QUEUE] * 2
    assert contacts(deleted.contacts())[0]["outcome"] == "deleted"


def test_unknown_group_name_waits():
    _, out, _ = run([ev("assign", 0, "system", group_id="g-new"), ev("resolve", 1_000)])
    [closed] = out.contacts()
    assert queue_for(closed, {}) is None
    assert queue_for(closed, {"g-new": "New"}) == "New"


def test_expiry_by_watermark_and_by_a_late_coming_event():
    state, out, _ = run(CHAT)
    assert expire(state, T0 + 50_000 + EXPIRY, EXPIRY, TOMBSTONE)[1] == []
    state, changes, touched = expire(state, T0 + 50_001 + EXPIRY, EXPIRY, TOMBSTONE)
    out.take(state, changes)
    [expired] = out.contacts()
    assert touched and (expired.outcome, expired.resolved_at, expired.resolved_by) == (
        "expired", T0 + 50_000 + EXPIRY, "system")
    state, out, verdicts = run([ev("message", 50_000 + EXPIRY + 5, "user", message_id="new")], state, out)
    assert verdicts == [Outcome.APPLIED] and state.head.cycle == 2 and state.open


def test_a_late_event_inside_an_expired_cycle_moves_its_expiry():
    state, out, _ = run(CHAT)
    state, changes, _ = expire(state, T0 + 60_000 + EXPIRY, EXPIRY, TOMBSTONE)
    out.take(state, changes)
    state, out, verdicts = run([ev("message", 55_000, "user", message_id="late")], state, out)
    assert verdicts == [Outcome.REVISED] and out.contacts()[0].resolved_at == T0 + 55_000 + EXPIRY


def test_closed_chats_become_tombstones_that_continue_the_numbering():
    state, out, _ = run(CHAT + [RESOLVE])
    assert expire(state, T0 + 60_000 + EXPIRY, EXPIRY, TOMBSTONE)[2] is False
    state, _, touched = expire(state, T0 + 60_001 + EXPIRY, EXPIRY, TOMBSTONE)
    assert touched and state.log == [] and len(state.dumps()) < 200
    state, out, verdicts = run([ev("message", 10_000, "user", message_id="too-late"),
                                ev("message", 30 * DAY, "user", message_id="back"),
                                ev("resolve", 30 * DAY + 1_000, "agent")], state, Emitted())
    assert verdicts[0] == Outcome.LATE and [c.cycle for c in out.contacts()] == [2]
    assert out.contacts()[0].group_id == "g1"
    assert expire(state, T0 + 30 * DAY + 1_000 + TOMBSTONE, EXPIRY, TOMBSTONE)[0] is not None
    state, _, _ = expire(state, T0 + 30 * DAY + 2_000 + EXPIRY, EXPIRY, TOMBSTONE)
    assert expire(state, T0 + 30 * DAY + 2_000 + TOMBSTONE, EXPIRY, TOMBSTONE)[0] is None


def test_state_round_trips_through_bytes():
    state, out, _ = run(CHAT + [RESOLVE, ev("message", 70_000, "user")])
    again = ChatState.loads(state.dumps())
    assert again == state
    assert len(state.dumps()) < 600


def test_a_state_of_the_format_before_revisions_continues_its_numbering():
    old = [1, False, T0, T0 + 60_000, T0 + 30_000, [2, 2, 1, 0, 1], T0 + 50_000, "a1", T0 + 5_000, "g1",
           "Support", T0 + 5_000, "a1", T0 + 60_000, [1, 2], [3]]
    import orjson
    state = ChatState.loads(orjson.dumps(old))
    _, out, verdicts = run([ev("message", 20_000, "user", message_id="old"),
                            ev("message", 70_000, "user"), ev("resolve", 80_000, "agent")], state)
    assert verdicts[0] == Outcome.LATE and [(c.cycle, c.group_id) for c in out.contacts()] == [(2, "g1")]


def test_the_log_is_bounded_and_the_frozen_part_is_late():
    events = [ev("message", n * 1_000, "user" if n % 2 else "agent", actor_id="a1") for n in range(MAX_LOG + 10)]
    state, out, _ = run(events)
    assert len(state.log) <= MAX_LOG and state.frozen_until is not None
    state, out, verdicts = run([ev("message", 500, "user", message_id="old"),
                                ev("resolve", (MAX_LOG + 20) * 1_000, "agent")], state, out)
    [contact] = out.contacts()
    assert verdicts[0] == Outcome.LATE and sum(contact.counts) == MAX_LOG + 10


@settings(max_examples=200, deadline=None)
@given(st.permutations(CHAT + [RESOLVE]), st.lists(st.integers(0, len(CHAT)), max_size=6), st.randoms())
def test_any_order_and_any_duplication_gives_the_same_contact(order, dups, rnd):
    everything = CHAT + [RESOLVE]
    deliveries = list(order) + [everything[i] for i in dups]
    rnd.shuffle(deliveries)
    _, expected, _ = run(everything)
    _, got, _ = run(deliveries)
    assert got.contacts() == expected.contacts()


# --- Each delivery-order bug the contact stream once had, as a named regression -------------

SECOND = [ev("message", 70_000, "user", message_id="c2-open"), ev("message", 75_000, "agent", actor_id="a1"),
          ev("resolve", 80_000, "agent")]
THIRD = [ev("reopen", 90_000, "user"), ev("message", 91_000, "user", message_id="c3"),
         ev("resolve", 100_000, "agent")]


def test_next_cycle_arriving_before_the_resolution_that_ended_the_first_is_not_merged():
    _, out, _ = run(CHAT + SECOND + [RESOLVE])
    _, expected, _ = run(CHAT + [RESOLVE] + SECOND)
    assert [(c.cycle, c.started_at, c.resolved_at) for c in out.contacts()] == [
        (1, T0, T0 + 60_000), (2, T0 + 70_000, T0 + 80_000)]
    assert out.contacts() == expected.contacts()


def test_a_retried_resolution_of_cycle_one_does_not_close_cycle_three():
    state, out, _ = run(CHAT + [RESOLVE] + SECOND + THIRD[:2])
    state, out, verdicts = run([RESOLVE] + THIRD[2:], state, out)
    assert verdicts[0] == Outcome.DUPLICATE
    assert [(c.cycle, c.resolved_at - c.started_at) for c in out.contacts()] == [
        (1, 60_000), (2, 10_000), (3, 10_000)]


def test_one_resolution_sent_by_webhook_and_by_app_is_one_close():
    webhook = ev("resolve", 60_300, "agent", source="webhook")
    app = ev("resolve", 61_000, "agent", source="app")  # its envelope timestamp: a little later
    user = ev("message", 60_600, "user", message_id="thanks")  # "thanks!" between the two copies
    for order in ([webhook, user, app], [app, user, webhook], [user, app, webhook]):
        _, out, _ = run(CHAT + order)
        assert [(c.cycle, c.resolved_at) for c in out.contacts()] == [(1, T0 + 60_300)], order


def test_a_group_assignment_arriving_after_the_close_it_precedes_revises_the_queue():
    no_group = [e for e in CHAT if e.kind != "assign"]
    state, out, _ = run(no_group + [RESOLVE])
    assert queue_for(out.contacts()[0], {"g1": "Support"}) == UNDEFINED_QUEUE
    _, out, verdicts = run([CHAT[1]], state, out)
    assert verdicts == [Outcome.REVISED] and out.revisions == {1: 2}
    assert queue_for(out.contacts()[0], {"g1": "Support"}) == "Support"


def test_user_messages_after_a_spam_or_deleted_close_make_no_contact():
    for status in ("spam", "deleted"):
        after = [ev("message", 70_000, "user", message_id="more"), ev("resolve", 80_000, "agent")]
        _, out, verdicts = run(CHAT + [ev("terminal", 60_000, "system", status=status)] + after)
        assert [c.outcome for c in out.contacts()] == [status]
        assert verdicts[-2:] == [Outcome.AFTER_TERMINAL, Outcome.AFTER_TERMINAL]
        _, out, _ = run(CHAT + [ev("terminal", 60_000, "system", status=status), ev("reopen", 90_000, "user"),
                                ev("resolve", 95_000, "agent")])
        assert [c.outcome for c in out.contacts()] == [status, "resolved"]


def test_a_chat_back_after_its_state_was_forgotten_does_not_reuse_a_contact_id():
    state, _, _ = run(CHAT + [RESOLVE])
    state, _, _ = expire(state, T0 + 60_001 + EXPIRY, EXPIRY, TOMBSTONE)
    _, out, _ = run([ev("message", 20 * DAY, "user"), ev("resolve", 20 * DAY + 5, "agent")], state)
    assert [c.cycle for c in out.contacts()] == [2]


def test_a_cycle_split_by_a_late_resolution_renumbers_and_the_vanished_one_is_retracted():
    late_resolve = ev("resolve", 45_000, "agent")
    state, out, _ = run(CHAT + [RESOLVE] + SECOND)
    state, out, verdicts = run([late_resolve], state, out)
    assert verdicts == [Outcome.REVISED]
    assert [(c.cycle, c.resolved_at) for c in out.contacts()] == [(1, T0 + 45_000), (2, T0 + 80_000)]
    merged = [ev("message", 50_000 + EXPIRY + DAY, "user", message_id="after-a-gap"),
              ev("resolve", 50_000 + EXPIRY + DAY + 10, "agent")]
    state, out, _ = run(CHAT + merged)
    assert [c.outcome for c in out.contacts()] == ["expired", "resolved"]
    state, out, _ = run([ev("message", 50_000 + EXPIRY // 2, "user", message_id="fills-the-gap"),
                         ev("message", 50_000 + EXPIRY, "agent", actor_id="a1")], state, out)
    assert [c.cycle for c in out.contacts()] == [1] and out.final[2] is None
