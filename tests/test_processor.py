"""ContactProcessor with plain dicts for tables: emission before state, pending names, the open-chat census."""

from __future__ import annotations

import asyncio

import orjson

from streams.group_names import GroupNames
from streams.processor import ContactProcessor
from streams.worker_metrics import WorkerMetrics

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


def test_contacts_are_sent_before_the_state_that_records_them():
    names = GroupNames()
    names.learn("acme", "g1", "Support")
    proc, chats, _, sink, _ = processor(names)
    asyncio.run(proc.process([(None, message("c1", 1), 0), (None, assign("c1", 2, "g1"), 0),
                              (None, resolve("c1", 9), 0)]))
    assert [orjson.loads(v)["queue"] for _, v in sink.sent] == ["Support"]
    assert sink.state_at_send == [{}], "state was written before the contact was acknowledged"
    assert b"acme:c1" in chats


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
    assert metrics.group_timeouts.get(integration="acme") == 1


def test_expiry_scan_counts_open_chats_per_queue():
    names = GroupNames()
    names.learn("acme", "g1", "Support")
    proc, _, _, _, metrics = processor(names)
    asyncio.run(proc.process([(None, assign("c3", 1, "g1"), 0), (None, message("c4", 5), 0)]))
    asyncio.run(proc.expire_idle())
    assert metrics.open_chats.get(queue="Support") == 1 and metrics.open_chats.get(queue="Undefined_Queue") == 1
    assert metrics.oldest_open_chat.get() > 0
