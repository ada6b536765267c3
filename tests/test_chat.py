"""The chat state machine: cycles, reopen, duplicates, lateness, expiry, and order independence."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings, strategies as st

from streams.chat import ChatState, Outcome, apply, expire
from streams.contact import UNDEFINED_QUEUE, build_contact, queue_for
from streams.events import ChatEvent

T0 = 1_714_986_000_000
DAY = 86_400_000
EXPIRY = 7 * DAY


def ev(kind, t, actor="user", **kw) -> ChatEvent:
    if kind == "message":
        kw.setdefault("message_type", "normal")
        kw.setdefault("message_id", f"m{t}")
    return ChatEvent(integration="acme", conversation_id="c1", kind=kind, at=T0 + t, actor=actor, **kw)


def run(events, state=None):
    closed, verdicts = [], []
    for event in events:
        state, out, verdict = apply(state, event, EXPIRY)
        closed += out
        verdicts.append(verdict)
    return state, closed, verdicts


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
    _, closed, _ = run(CHAT + [RESOLVE])
    [contact] = contacts(closed)
    assert contact["contact_id"] == "acme:c1:1" and contact["queue"] == "Support"
    assert contact["started_at"] == "2024-05-06T09:00:00.000Z"
    assert contact["first_response_at"] == "2024-05-06T09:00:30.000Z"
    assert (contact["wait_seconds"], contact["duration_seconds"]) == (30.0, 60.0)
    assert contact["messages"] == {"user": 2, "agent": 2, "bot": 1, "system": 0, "private": 1}
    assert (contact["agent_id"], contact["resolved_by"], contact["outcome"]) == ("a1", "agent", "resolved")
    assert contact["offered"] and contact["handled"]


def test_reopen_and_implicit_reopen_open_new_cycles_keeping_the_group():
    later = [ev("reopen", 70_000, "user"), ev("message", 71_000, "user"), ev("resolve", 80_000, "agent"),
             ev("message", 90_000, "user"), ev("resolve", 95_000, "system")]
    _, closed, _ = run(CHAT + [RESOLVE] + later)
    found = contacts(closed)
    assert [c["cycle"] for c in found] == [1, 2, 3]
    assert [c["queue"] for c in found] == ["Support"] * 3
    assert found[1]["started_at"] == "2024-05-06T09:01:10.000Z" and not found[1]["handled"]
    assert found[2]["resolved_by"] == "system"


def test_late_after_close_and_duplicates_change_nothing():
    state, closed, _ = run(CHAT + [RESOLVE])
    state, more, verdicts = run([ev("message", 10_000, "user", message_id="late"),
                                 ev("message", 65_000, "agent", actor_id="a1"),
                                 CHAT[3], RESOLVE], state)
    assert more == [] and verdicts == [Outcome.LATE, Outcome.AFTER_CLOSE, Outcome.DUPLICATE, Outcome.DUPLICATE]


def test_deleted_spam_and_groupless_chats_go_to_undefined_queue():
    _, deleted, _ = run(CHAT + [ev("terminal", 60_000, "agent", status="deleted")])
    _, groupless, _ = run([ev("message", 0), ev("resolve", 1_000, "agent")])
    assert [c["queue"] for c in contacts(deleted + groupless)] == [UNDEFINED_QUEUE, UNDEFINED_QUEUE]
    assert contacts(deleted)[0]["outcome"] == "deleted"


def test_unknown_group_name_waits():
    _, closed, _ = run([ev("assign", 0, "system", group_id="g-new"), ev("resolve", 1_000)])
    assert queue_for(closed[0], {}) is None
    assert queue_for(closed[0], {"g-new": "New"}) == "New"


def test_expiry_by_watermark_and_by_a_late_coming_event():
    state, _, _ = run(CHAT)
    assert expire(state, T0 + 50_000 + EXPIRY, EXPIRY)[1] == []
    _, [expired] = expire(replace(state, seen=list(state.seen)), T0 + 50_001 + EXPIRY, EXPIRY)
    assert (expired.outcome, expired.resolved_at, expired.resolved_by) == ("expired", T0 + 50_000 + EXPIRY, "system")
    _, closed, verdicts = run([ev("message", 50_000 + EXPIRY + 5, "user", message_id="new")], state)
    assert [c.outcome for c in closed] == ["expired"] and verdicts == [Outcome.APPLIED]
    assert state.cycle == 2 and state.open


def test_closed_chats_are_forgotten_after_the_expiry():
    state, _, _ = run(CHAT + [RESOLVE])
    assert expire(state, T0 + 60_000 + EXPIRY, EXPIRY)[0] is state
    assert expire(state, T0 + 60_001 + EXPIRY, EXPIRY)[0] is None


def test_state_round_trips_through_bytes():
    state, _, _ = run(CHAT)
    assert ChatState.loads(state.dumps()) == state
    assert len(state.dumps()) < 400


@settings(max_examples=200, deadline=None)
@given(st.permutations(CHAT), st.lists(st.integers(0, len(CHAT) - 1), max_size=6), st.randoms())
def test_any_order_and_any_duplication_gives_the_same_contact(order, dups, rnd):
    deliveries = list(order) + [CHAT[i] for i in dups]
    rnd.shuffle(deliveries)
    _, expected, _ = run(CHAT + [RESOLVE])
    _, got, _ = run(deliveries + [RESOLVE, RESOLVE] + [CHAT[i] for i in dups])
    assert got == expected


CYCLE_TWO = [ev("reopen", 100_000, "user"), ev("message", 101_000, "agent", actor_id="a2"),
             ev("assign", 102_000, "system", group_id="g2", agent_id="a2"), ev("message", 103_000, "user")]
RESOLVE_TWO = ev("resolve", 110_000, "agent")


@settings(max_examples=150, deadline=None)
@given(st.permutations(CHAT), st.permutations(CYCLE_TWO[1:]), st.lists(st.integers(0, 12), max_size=8), st.randoms())
def test_reordering_within_cycles_and_late_duplicates_keep_every_contact(first, second, dups, rnd):
    everything = CHAT + [RESOLVE] + CYCLE_TWO + [RESOLVE_TWO]
    _, expected, _ = run(everything)
    deliveries = list(first) + [RESOLVE] + [CYCLE_TWO[0]] + list(second) + [RESOLVE_TWO]
    for index in dups:  # a retry arrives some time after its original
        original = everything[index]
        position = deliveries.index(original) + 1
        deliveries.insert(rnd.randint(position, len(deliveries)), original)
    _, got, _ = run(deliveries)
    assert got == expected and [c.cycle for c in got] == [1, 2]
