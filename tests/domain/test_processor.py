"""ContactProcessor with plain dicts for tables: emission before state, pending names, the open-chat census."""

from __future__ import annotations

import asyncio

import orjson

from streams.domain.chat import ChatState
from streams.domain.group_names import GroupNames
from streams.domain.metrics import WorkerMetrics
from streams.domain.processor import ContactProcessor
from streams.domain.times import parse_time

T = "2024-05-06T09:00:{:02d}.000Z"


def envelope(conversation, action, second, section, body, actor="user"):
    payload = {"actor": {"actor_type": actor}, "action": action, "action_time": T.format(second),
               "data": {section: body}}
    return orjson.dumps({"v": 1, "event_id": "e", "integration": "acme", "received_at": T.format(0),
                         "format": "webhook", "retry_count": 0, "payload": payload})


def message(conversation, second):
    return envelope(conversation, "message_create", second, "message",
                    {"id": f"m{second}", "conversation_id": conversation, "actor_type": "user"})


def assign(conversation, second, group):
    return envelope(conversation, "conversation_assignment", second, "assignment",
                    {"to_group_id": group, "conversation": {"conversation_id": conversation}}, "system")


def resolve(conversation, second):
    return envelope(conversation, "conversation_resolution", second, "resolve",
                    {"conversation": {"conversation_id": conversation}}, "agent")


def known(**groups) -> GroupNames:
    """Group names of the acme integration, as the groups topic would give them."""
    names = GroupNames()
    for group_id, name in groups.items():
        names.learn("acme", group_id, name)
    return names


class Sink:
    def __init__(self, chats):
        self.chats, self.sent, self.state_at_send = chats, [], []

    async def __call__(self, records):
        self.state_at_send.append(dict(self.chats))
        self.sent += records


def processor(names=None, clock=lambda: 1_714_986_100.0):
    chats, pending = {}, {}
    sink = Sink(chats)
    metrics = WorkerMetrics()
    proc = ContactProcessor(chats=chats, pending=pending, names=names or GroupNames(), emit=sink, metrics=metrics,
                            expiry_ms=7 * 86_400_000, group_wait_ms=30_000, partition_of=lambda key: 0, clock=clock)
    return proc, chats, pending, sink, metrics


def test_the_state_is_written_and_flushed_before_the_contact_is_sent():
    names = known(g1="Support")
    proc, chats, _, sink, _ = processor(names)
    flushed = []

    async def flush():
        flushed.append(dict(chats))

    proc.flush = flush
    asyncio.run(proc.process([(None, message("c1", 1), 0), (None, assign("c1", 2, "g1"), 0),
                              (None, resolve("c1", 9), 0)]))
    assert [orjson.loads(v)["queue"] for _, v in sink.sent] == ["Support"]
    assert b"acme:c1" in flushed[0] and sink.state_at_send == flushed, "sent before its state was flushed"
    assert ChatState.loads(chats[b"acme:c1"]).unsent == {1: []}, "the revision is not marked as written ahead"


def test_a_worker_that_died_after_writing_ahead_has_its_revisions_re_sent_not_renumbered():
    names = known(g1="Support", g2="Billing")
    proc, chats, pending, sink, _ = processor(names)
    asyncio.run(proc.process([(None, message("c1", 1), 0), (None, assign("c1", 2, "g1"), 0),
                              (None, resolve("c1", 9), 0)]))
    asyncio.run(proc.process([(None, assign("c1", 5, "g2"), 0)]))  # a move: retraction 2, revision 3
    assert ChatState.loads(chats[b"acme:c1"]).unsent == {1: [["Support", 2]]}
    heir, _, _, heir_sink, _ = processor(names)  # a new incarnation on the same tables, as after a SIGKILL
    heir.chats, heir.pending, heir_sink.chats = chats, pending, chats
    asyncio.run(heir.resend_unsent())
    assert [(k.decode(), orjson.loads(v)["revision"]) for k, v in heir_sink.sent] == [
        ("acme/Support", 2), ("acme/Billing", 3)]
    asyncio.run(heir.process([(None, message("c1", 3), 0)]))  # a later event: revision 4, never 2 again
    assert [orjson.loads(v)["revision"] for _, v in heir_sink.sent][2:] == [4]
    asyncio.run(heir.process([(None, message("c9", 1), 0), (None, message("c1", 4), 0)]))
    assert ChatState.loads(chats[b"acme:c1"]).unsent == {1: []}, "own marks are dropped on the next write"


def test_unknown_group_waits_then_goes_to_undefined_queue():
    now = [1_714_986_100.0]
    proc, _, pending, sink, metrics = processor(clock=lambda: now[0])
    asyncio.run(proc.process([(None, assign("c2", 1, "g-new"), 0), (None, resolve("c2", 2), 0)]))
    assert sink.sent == [] and len(pending) == 1
    asyncio.run(proc.release_pending())
    assert sink.sent == []
    now[0] += 31
    asyncio.run(proc.release_pending())
    assert [orjson.loads(v)["queue"] for _, v in sink.sent] == ["Undefined_Queue"] and pending == {}
    assert metrics.value("freshstream_worker_group_name_timeouts_total", integration="acme") == 1


def test_expiry_scan_counts_open_chats_per_queue():
    names = known(g1="Support")
    proc, _, _, _, metrics = processor(names)
    asyncio.run(proc.process([(None, assign("c3", 1, "g1"), 0), (None, message("c4", 5), 0)]))
    asyncio.run(proc.expire_idle())
    assert metrics.value("freshstream_worker_open_chats", queue="Support") == 1
    assert metrics.value("freshstream_worker_open_chats", queue="Undefined_Queue") == 1
    assert metrics.value("freshstream_worker_oldest_open_chat_seconds") > 0


def sent_records(sink):
    return [(key.decode(), orjson.loads(value)) for key, value in sink.sent]


def test_a_move_to_another_queue_retracts_under_the_old_key_then_revises_under_the_new():
    names = known(g1="Support", g2="Billing")
    proc, _, _, sink, metrics = processor(names)
    asyncio.run(proc.process([(None, message("c5", 1), 0), (None, assign("c5", 2, "g1"), 0),
                              (None, resolve("c5", 9), 0)]))
    asyncio.run(proc.process([(None, assign("c5", 5, "g2"), 0)]))  # a transfer that arrived late
    assert [(key, r["revision"], r["retracted"]) for key, r in sent_records(sink)] == [
        ("acme/Support", 1, False), ("acme/Support", 2, True), ("acme/Billing", 3, False)]
    assert metrics.value("freshstream_worker_retractions_total", queue="Support") == 1
    assert metrics.value("freshstream_worker_revisions_total", queue="Billing") == 1


def future(conversation, second, years):
    body = orjson.loads(message(conversation, second))
    body["payload"]["action_time"] = f"{2024 + years}-05-06T09:00:{second:02d}.000Z"
    return orjson.dumps(body)


def test_one_event_dated_years_ahead_does_not_move_the_watermark():
    proc, chats, _, sink, metrics = processor()
    asyncio.run(proc.process([(None, message("c6", 1), 0), (None, future("c7", 2, years=3), 0)]))
    asyncio.run(proc.expire_idle())
    assert sink.sent == [] and metrics.value("freshstream_worker_events_total", kind="message", verdict="future_time") == 1
    assert proc.watermarks[0] < parse_time("2024-05-06T10:00:00Z")


def test_a_retried_message_without_an_event_time_counts_once():
    def timeless(received):
        body = orjson.loads(message("c8", 1))
        del body["payload"]["action_time"]
        body["received_at"], body["event_id"] = received, "same-body"
        return orjson.dumps(body)

    names = GroupNames()
    proc, _, _, sink, metrics = processor(names)
    asyncio.run(proc.process([(None, timeless(T.format(3)), 0), (None, timeless(T.format(40)), 0),
                              (None, resolve("c8", 50), 0)]))
    [(_, contact)] = sent_records(sink)
    assert contact["messages"]["user"] == 1
    assert metrics.value("freshstream_worker_events_total", kind="message", verdict="duplicate") == 1


def test_a_worker_that_sent_what_it_wrote_ahead_leaves_nothing_to_re_send():
    names = known(g1="Support")
    proc, chats, pending, sink, _ = processor(names)
    asyncio.run(proc.process([(None, message("c1", 1), 0), (None, assign("c1", 2, "g1"), 0),
                              (None, resolve("c1", 9), 0)]))
    assert proc.write_ahead.confirmed == {f"{proc.write_ahead.incarnation}@0".encode(): b"0"}
    heir, _, _, heir_sink, metrics = processor(names)  # as after a clean stop or a rebalance
    heir.chats, heir.pending, heir.write_ahead.confirmed = chats, pending, proc.write_ahead.confirmed
    asyncio.run(heir.resend_unsent())
    assert heir_sink.sent == [] and metrics.value("freshstream_worker_resent_total") == 0
    assert ChatState.loads(chats[b"acme:c1"]).unsent == {}


def test_a_send_that_fails_leaves_its_marks_to_be_re_sent():
    names = known(g1="Support")
    proc, chats, _, sink, _ = processor(names)

    async def broken(records):
        raise ConnectionError("broker gone")

    proc.emit = broken
    try:
        asyncio.run(proc.process([(None, message("c1", 1), 0), (None, resolve("c1", 9), 0)]))
    except ConnectionError:
        pass
    proc.emit = sink
    asyncio.run(proc.release_pending())  # the next tick of the 1 s timer
    assert [(orjson.loads(v)["contact_id"], orjson.loads(v)["revision"]) for _, v in sink.sent] == [("acme:c1:1", 1)]
