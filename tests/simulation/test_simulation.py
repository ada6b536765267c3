"""The traffic simulator: deterministic, valid bodies, and expected contacts that obey docs/contacts.md."""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from functools import lru_cache

import orjson
import pytest

from connectors.simulation.scenario import AGENTS, DEFAULT_START, GROUPS, UNDEFINED_QUEUE, build_scenario
from streams.domain.envelope import parse_body
from tests.schemas import assert_valid

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
FEEDBACK = re.compile(r"^[0-9]+_[0-9a-z]+_feedback$")


@lru_cache
def scenario(chats: int = 500, seed: int = 7):
    return build_scenario("acme-sim", chats, seed)


def ms(value: str) -> int:
    moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return int(moment.timestamp()) * 1000 + moment.microsecond // 1000


def event_ms(event: dict) -> int:
    """The event time by the table of docs/contacts.md §1, written again here on purpose."""
    data = event["data"]
    if "action" in event:
        return ms(data["message"]["created_time"] if "message" in data else event["action_time"])
    if event["event"] == "onMessageCreate":
        return ms(data["message"]["created_time"])
    if event["event"] == "onConversationCreate":
        return ms(data["conversation"]["created_time"])
    status = data["changes"]["model_changes"].get("status", [None, data["conversation"]["status"]])[1]
    if status in ("reopened", "reopen"):
        return ms(data["conversation"]["reopened_time"])
    return event["timestamp"] if event["timestamp"] > 10**11 else event["timestamp"] * 1000


def by_chat(chosen) -> dict[str, list]:
    chats = defaultdict(list)
    for delivery in chosen.deliveries:
        chats[delivery.chat].append(delivery)
    return chats


def test_same_seed_same_bytes_and_other_seed_other_traffic():
    first, again = build_scenario("acme-sim", 40, 3), build_scenario("acme-sim", 40, 3)
    other = build_scenario("acme-sim", 40, 4)
    assert first.deliveries == again.deliveries and first.expected == again.expected
    assert [d.body for d in first.deliveries] != [d.body for d in other.deliveries]


def test_start_moves_every_time():
    later = build_scenario("acme-sim", 20, 3, start=DEFAULT_START + timedelta(days=1))
    base = build_scenario("acme-sim", 20, 3)
    assert [ms(c["started_at"]) - 86_400_000 for c in later.expected] == [ms(c["started_at"]) for c in base.expected]


def test_each_expected_contact_has_one_closing_delivery_at_its_resolved_time():
    """What the soak bench times latency from: the first delivery of a cycle's closing event."""
    chosen = scenario()
    closers = Counter(f"acme-sim:{d.chat}:{d.closes}" for d in chosen.deliveries if d.closes)
    assert closers == Counter(c["contact_id"] for c in chosen.expected)
    resolved = {c["contact_id"]: ms(c["resolved_at"]) for c in chosen.expected}
    for delivery in chosen.deliveries:
        if delivery.closes:
            assert "X-Retry-Count" not in delivery.headers
            assert event_ms(orjson.loads(delivery.body)) == resolved[f"acme-sim:{delivery.chat}:{delivery.closes}"]


def test_first_index_gives_back_to_back_scenarios_distinct_chats():
    first, second = build_scenario("acme-sim", 300, 3), build_scenario("acme-sim", 300, 4, first_index=300)
    assert not {d.chat for d in first.deliveries} & {d.chat for d in second.deliveries}
    assert build_scenario("acme-sim", 300, 3, first_index=0).deliveries == first.deliveries


def test_every_body_passes_the_ingress_validator_and_names_its_chat():
    for delivery in scenario().deliveries:
        events = parse_body(delivery.body)
        assert len(events) == 1 and events[0].conversation_id == delivery.chat
        assert events[0].payload is delivery.body


def test_one_contact_per_cycle_numbered_from_one():
    chosen = scenario()
    cycles = defaultdict(list)
    for contact in chosen.expected:
        cycles[contact["conversation_id"]].append(contact["cycle"])
        assert contact["contact_id"] == f"acme-sim:{contact['conversation_id']}:{contact['cycle']}"
    assert set(cycles) == set(by_chat(chosen)) and len(cycles) == 500
    assert all(sorted(n) == list(range(1, len(n) + 1)) for n in cycles.values())
    assert [c["contact_id"] for c in chosen.expected] == sorted(c["contact_id"] for c in chosen.expected)


def test_contact_times_and_seconds_are_consistent():
    window = (ms("2024-05-06T08:00:00.000Z"), ms("2024-05-08T08:00:00.000Z"))
    for c in scenario().expected:
        started, resolved = ms(c["started_at"]), ms(c["resolved_at"])
        assert window[0] <= started <= resolved <= window[1]
        assert c["duration_seconds"] == round((resolved - started) / 1000, 3)
        if c["first_response_at"] is None:
            assert c["wait_seconds"] is None
        else:
            assert started <= ms(c["first_response_at"]) <= resolved
            assert c["wait_seconds"] == round((ms(c["first_response_at"]) - started) / 1000, 3)


def test_handled_offered_and_queue_follow_the_rules():
    names = {g["id"]: g["name"] for g in GROUPS}
    for c in scenario().expected:
        assert c["handled"] == (c["messages"]["agent"] > 0) == (c["first_response_at"] is not None)
        assert c["offered"] == (c["messages"]["user"] > 0)
        undefined = c["outcome"] != "resolved" or c["group_id"] is None
        assert (c["queue"] == UNDEFINED_QUEUE) == undefined
        if not undefined:
            assert c["queue"] == names[c["group_id"]]
        assert c["agent_id"] is None or c["agent_id"] in {a["id"] for a in AGENTS}


def as_emitted(contact: dict) -> dict:
    """An expected contact as the worker writes it: with its emission time, and a revision
    (the oracle cannot know how many corrections arrival order will cause) unless it gives one."""
    return {"revision": 1, "retracted": False, **contact, "emitted_at": "2024-05-08T09:00:00.123Z"}


def test_expected_contacts_validate_against_the_contact_schema():
    for contact in scenario().expected:
        assert "emitted_at" not in contact
        assert_valid("contact", as_emitted(contact))


def test_schema_is_strict():
    contact = as_emitted(scenario().expected[0])
    with pytest.raises(AssertionError):
        assert_valid("contact", {**contact, "extra": 1})
    with pytest.raises(AssertionError):
        assert_valid("contact", {k: v for k, v in contact.items() if k != "emitted_at"})


def test_the_mix_covers_what_production_sends():
    chosen = scenario()
    outcomes = Counter(c["outcome"] for c in chosen.expected)
    assert {"resolved", "deleted", "spam"} <= set(outcomes)
    assert {c["resolved_by"] for c in chosen.expected} == {"user", "agent", "bot", "system"}
    assert {"Support technique — Montréal", "カスタマーサポート"} <= {c["queue"] for c in chosen.expected}
    assert any(c["group_id"] is None for c in chosen.expected)
    assert any(not c["handled"] and c["agent_id"] is None for c in chosen.expected)
    assert any(not c["offered"] for c in chosen.expected)
    assert max(c["cycle"] for c in chosen.expected) >= 3
    assert any(c["messages"]["private"] for c in chosen.expected)
    assert any(c["duration_seconds"] > 10 * 3600 for c in chosen.expected)  # resolved next day
    ids = list(by_chat(chosen))
    assert all(any(p.match(i) for i in ids) for p in (UUID, HEX32, FEEDBACK))


def test_both_formats_and_the_2018_variants_are_present():
    events = [orjson.loads(d.body) for d in scenario().deliveries]
    kinds = Counter(e.get("action") or e["event"] for e in events)
    assert set(kinds) == {"message_create", "conversation_assignment", "conversation_resolution",
                          "conversation_reopen", "onConversationCreate", "onConversationUpdate", "onMessageCreate"}
    messages = [e["data"]["message"] for e in events if e.get("action") == "message_create"]
    assert any("msg_parts" in m for m in messages) and any("message_parts" in m for m in messages)
    assert any("message_type" not in m for m in messages)
    assert any(e["data"]["reopen"]["conversation"]["status"] == "reopen" for e in events if "reopen" in e["data"])
    stamps = [e["timestamp"] for e in events if "event" in e]
    assert any(t < 10**11 for t in stamps) and any(t > 10**11 for t in stamps)
    groups = [e["data"]["associations"]["group"] for e in events if "group" in e["data"].get("associations", {})]
    assert {(g["id"], g["name"]) for g in groups} <= {(g["id"], g["name"]) for g in GROUPS}
    assert not any("name" in str(e["data"].get("assignment", {})) for e in events if "action" in e)


def test_app_timestamps_in_seconds_close_on_whole_seconds():
    """Resolutions are timed by the envelope timestamp; messages keep their milliseconds."""
    chosen = scenario()
    in_seconds = {d.chat for d in chosen.deliveries if orjson.loads(d.body).get("timestamp", 10**12) < 10**11}
    contacts = [c for c in chosen.expected if c["conversation_id"] in in_seconds]
    assert contacts and all(c["resolved_at"].endswith(".000Z") for c in contacts)
    assert any(not c["started_at"].endswith(".000Z") for c in contacts)


def test_retries_repeat_an_earlier_body_of_the_same_chat():
    chats = by_chat(scenario())
    retried = 0
    for deliveries in chats.values():
        for i, delivery in enumerate(deliveries):
            if delivery.headers:
                assert delivery.headers == {"X-Retry-Count": "1"}
                assert delivery.body in {d.body for d in deliveries[:i] if not d.headers}
                retried += 1
    total = sum(len(d) for d in chats.values())
    assert 0.015 < retried / total < 0.05


def test_delivery_order_within_a_chat_keeps_closes_last_and_openers_first():
    chosen, shuffled = scenario(), 0
    closes = defaultdict(list)
    for c in chosen.expected:
        closes[c["conversation_id"]].append((ms(c["started_at"]), ms(c["resolved_at"])))
    for chat, deliveries in by_chat(chosen).items():
        times = [event_ms(orjson.loads(d.body)) for d in deliveries if not d.headers]
        assert len(set(times)) == len(times), "two distinct events of one chat share a time"
        shuffled += times != sorted(times)
        for n, (started, resolved) in enumerate(sorted(closes[chat])):
            cycle = [t for t in times if started <= t <= resolved]
            assert cycle[-1] == resolved and (n == 0 or cycle[0] == started)
            assert times.index(resolved) - times.index(cycle[0]) == len(cycle) - 1  # cycles do not interleave
    assert shuffled > 50


def test_chats_interleave():
    chats = [d.chat for d in scenario().deliveries[:200]]
    switches = sum(a != b for a, b in zip(chats, chats[1:]))
    assert switches > 100


# Seed 7, 50 chats, computed with the simulator as it was before `disorder` existed: the
# ordered scenario must not change, benches and stored expectations depend on its bytes.
ORDERED_DIGEST = "6aa83de744a324ddbfd689194fe29b7e138939bbb3b3f55927e9b50868f40919"


def digest(chosen) -> str:
    h = hashlib.sha256()
    for d in chosen.deliveries:
        h.update(orjson.dumps([d.body.decode(), sorted(d.headers.items()), d.chat, d.closes]) + b"\n")
    h.update(orjson.dumps(chosen.expected))
    return h.hexdigest()


@lru_cache
def disordered(chats: int = 500, seed: int = 7):
    return build_scenario("acme-sim", chats, seed, disorder=True)


def cycles_of(chosen) -> dict[str, list[tuple[int, int]]]:
    """Conversation id → (started, resolved) event times of its cycles, in order."""
    cycles = defaultdict(list)
    for c in chosen.expected:
        cycles[c["conversation_id"]].append((ms(c["started_at"]), ms(c["resolved_at"])))
    return {chat: sorted(spans) for chat, spans in cycles.items()}


def test_without_disorder_the_scenario_is_byte_for_byte_what_it_was():
    assert digest(build_scenario("acme-sim", 50, 7)) == ORDERED_DIGEST
    assert digest(build_scenario("acme-sim", 50, 7, disorder=False)) == ORDERED_DIGEST


def test_disorder_keeps_the_chats_the_first_attempts_and_the_expected_contacts():
    ordered, chosen = scenario(), disordered()
    assert chosen.expected == ordered.expected
    first = [Counter((d.chat, d.body) for d in s.deliveries if not d.headers) for s in (ordered, chosen)]
    assert first[0] == first[1] and max(first[1].values()) == 1
    assert [d.body for d in chosen.deliveries] != [d.body for d in ordered.deliveries]
    assert build_scenario("acme-sim", 500, 7, disorder=True).deliveries == chosen.deliveries  # deterministic

    other = build_scenario("acme-other", 500, 7, disorder=True)  # the same chats for a second integration
    assert [d.body for d in other.deliveries] == [d.body for d in chosen.deliveries]
    unnamed = [[{**c, "integration": "", "contact_id": c["contact_id"].split(":", 1)[1]} for c in s.expected]
               for s in (ordered, other)]
    assert unnamed[0] == unnamed[1]


def test_disorder_retries_repeat_an_earlier_first_attempt_and_keep_the_ordered_ones():
    ordered = Counter((d.chat, d.body) for d in scenario().deliveries if d.headers)
    retried = Counter()
    for chat, deliveries in by_chat(disordered()).items():
        for i, delivery in enumerate(deliveries):
            if delivery.headers:
                assert delivery.headers == {"X-Retry-Count": "1"} and not delivery.closes
                assert delivery.body in {d.body for d in deliveries[:i] if not d.headers}
                retried[chat, delivery.body] += 1
    assert not ordered - retried and sum(retried.values()) > sum(ordered.values())


def test_disorder_crosses_closes_and_delivers_events_after_their_own_close():
    chosen, cycles = disordered(), cycles_of(disordered())
    crossed = several = late = 0
    for chat, deliveries in by_chat(chosen).items():
        times = [event_ms(orjson.loads(d.body)) for d in deliveries if not d.headers]
        spans = cycles[chat]
        crossings = [any(spans[n][1] < t <= spans[n + 1][1] for t in times[:times.index(spans[n][1])])
                     for n in range(len(spans) - 1)]
        several += len(spans) > 1
        crossed += any(crossings)
        late += any(started <= t < resolved for started, resolved in spans for t in times[times.index(resolved):])
    assert several > 50 and crossed > 0.4 * several
    assert late > 0.3 * len(cycles)


def test_disorder_re_posts_closes_after_a_later_cycle_opened():
    chosen, cycles = disordered(), cycles_of(disordered())
    after_next = after_two = 0
    for chat, deliveries in by_chat(chosen).items():
        spans = cycles[chat]
        times = [(event_ms(orjson.loads(d.body)), bool(d.headers)) for d in deliveries]
        opened = {started: times.index((started, False)) for started, _ in spans}
        for n, (_, resolved) in enumerate(spans[:-1]):
            retries = [i for i, (t, retry) in enumerate(times) if retry and t == resolved]
            after_next += any(i > opened[spans[n + 1][0]] for i in retries)
            after_two += n + 2 < len(spans) and any(i > opened[spans[n + 2][0]] for i in retries)
    assert after_next > 20 and after_two > 0


def test_disorder_marks_the_delivery_that_completes_each_cycle():
    """`closes` is on the last first attempt of the events up to the cycle's close (earlier cycles too)."""
    chosen = disordered()
    resolved = {c["contact_id"]: ms(c["resolved_at"]) for c in chosen.expected}
    marked = Counter()
    for chat, deliveries in by_chat(chosen).items():
        firsts = [(i, event_ms(orjson.loads(d.body))) for i, d in enumerate(deliveries) if not d.headers]
        for i, delivery in enumerate(deliveries):
            if delivery.closes:
                cid = f"acme-sim:{chat}:{delivery.closes}"
                assert not delivery.headers
                assert i == max(j for j, t in firsts if t <= resolved[cid])
                marked[cid] += 1
    assert max(marked.values()) == 1 and len(marked) > 0.85 * len(resolved)
    assert any(orjson.loads(d.body).get("action") == "message_create" for d in chosen.deliveries if d.closes)


def test_disorder_still_spreads_each_chat_and_interleaves_chats():
    chosen = disordered()
    chats = [d.chat for d in chosen.deliveries[:200]]
    assert sum(a != b for a, b in zip(chats, chats[1:])) > 100


def test_simulate_takes_disorder_on_the_command_line():
    from connectors.cli.main import build_parser
    argv = ["simulate", "--integration", "acme", "--key", "k", "--chats", "3"]
    assert build_parser().parse_args(argv + ["--disorder"]).disorder is True
    assert build_parser().parse_args(argv).disorder is False
