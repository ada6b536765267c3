"""The expiry scan looks only at the chats the watermark made due (streams/domain/expiry_index.py):
it must find exactly what a scan of every chat finds. A second processor, fed the same records,
rebuilds its index from the whole table before each scan; both must emit the same contacts and
keep the same states, however events, scans and forgetting interleave."""

from __future__ import annotations

import asyncio

import orjson
from hypothesis import given, settings, strategies as st

from streams.domain.chat import ChatState
from streams.domain.expiry_index import ExpiryIndex
from streams.domain.group_names import GroupNames
from streams.domain.metrics import WorkerMetrics
from streams.domain.processor import ContactProcessor
from streams.domain.times import ms_to_time

START = 1_714_986_000_000  # 2024-05-06T09:00:00Z
MINUTE = 60_000


def event(conversation: str, action: str, minute: int, n: int) -> bytes:
    at = ms_to_time(START + minute * MINUTE + n)
    if action == "message":
        payload = {"actor": {"actor_type": "user"}, "action": "message_create", "action_time": at,
                   "data": {"message": {"id": f"m{minute}-{n}", "conversation_id": conversation,
                                        "actor_type": "user"}}}
    elif action == "assign":
        payload = {"actor": {"actor_type": "system"}, "action": "conversation_assignment", "action_time": at,
                   "data": {"assignment": {"to_group_id": "g1", "conversation": {"conversation_id": conversation}}}}
    else:
        payload = {"actor": {"actor_type": "agent"}, "action": "conversation_resolution", "action_time": at,
                   "data": {"resolve": {"conversation": {"conversation_id": conversation}}}}
    return orjson.dumps({"v": 1, "event_id": f"{conversation}-{minute}-{n}", "integration": "acme",
                         "received_at": at, "format": "webhook", "retry_count": 0, "payload": payload})


def raw_records(events, n: int, partitions: int) -> tuple[list, int]:
    """The raw records of one step's (chat, action, minute) events, numbered on from n."""
    records = []
    for chat, action, minute in events:
        n += 1
        key = f"acme:c{chat}".encode()
        records.append((key, event(f"c{chat}", action, minute, n), key[-1] % partitions))
    return records, n


def make(partitions: int):
    names = GroupNames()
    names.learn("acme", "g1", "Support")
    chats, pending, sent = {}, {}, []

    async def emit(records):
        sent.extend(records)
        await asyncio.sleep(0)  # as a real send: other work may run meanwhile

    proc = ContactProcessor(chats=chats, pending=pending, names=names, emit=emit, metrics=WorkerMetrics(),
                            expiry_ms=60 * MINUTE, group_wait_ms=30_000, tombstone_ms=180 * MINUTE,
                            partition_of=lambda key: key[-1] % partitions, clock=lambda: 1_800_000_000.0)
    return proc, chats, sent


def settled(chats: dict) -> dict:
    """The states without their write-ahead marks: a full pass clears marks of batches that were
    sent (rewriting the state), which changes nothing a scan or a contact depends on."""
    out = {}
    for chat, raw in chats.items():
        state = ChatState.loads(raw)
        state.unsent.clear()
        state.writer = None
        out[chat] = state.dumps()
    return out


steps = st.lists(st.one_of(
    st.tuples(st.just("events"), st.lists(st.tuples(st.integers(0, 7), st.sampled_from(["message", "assign", "resolve"]),
                                                    st.integers(0, 12 * 60)), min_size=1, max_size=8)),
    st.just(("scan",))), min_size=1, max_size=30)


@settings(max_examples=80, deadline=None)
@given(steps, st.integers(1, 3))
def test_the_indexed_scan_finds_what_a_scan_of_every_chat_finds(script, partitions):
    indexed, indexed_chats, indexed_sent = make(partitions)
    full, full_chats, full_sent = make(partitions)

    async def run():
        n = 0
        for step in script:
            if step[0] == "scan":
                await indexed.expire_idle()
                await full.resend_unsent()  # the whole table filed afresh: a scan of every chat
                await full.expire_idle()
                continue
            records, n = raw_records(step[1], n, partitions)
            await indexed.process(records)
            await full.process(records)
        await indexed.expire_idle()
        await full.resend_unsent()
        await full.expire_idle()

    asyncio.run(run())
    assert sorted(indexed_sent) == sorted(full_sent)  # chats may come in another order; each chat's in its own
    assert settled(indexed_chats) == settled(full_chats)
    assert sorted(indexed.index.filed()) == sorted(full.index.filed()) == sorted(indexed_chats)
    assert indexed.index.census(indexed.names) == full.index.census(full.names)


def test_a_scan_loads_only_the_chats_that_are_due():
    proc, chats, sent = make(1)
    records = [(f"acme:c{i}".encode(), event(f"c{i}", "message", 0 if i == 0 else 100, i), 0) for i in range(50)]
    asyncio.run(proc.process(records))
    loaded = []
    real = chats.get
    chats_get = lambda key, default=None: loaded.append(key) or real(key, default)  # noqa: E731
    proc.chats = type("Spy", (dict,), {"get": staticmethod(chats_get)})(chats)
    asyncio.run(proc.expire_idle())  # the watermark (minute 100) is past c0's expiry only
    assert loaded == [b"acme:c0"]
    assert [orjson.loads(v)["outcome"] for _, v in sent] == ["expired"]
    assert isinstance(proc.index, ExpiryIndex)


@settings(max_examples=60, deadline=None)
@given(steps, st.integers(1, 3))
def test_events_written_between_the_chunks_of_a_scan_leave_the_index_as_a_rebuild_makes_it(script, partitions):
    import streams.domain.processor as processor_module

    proc, chats, _ = make(partitions)
    chunk, processor_module._EXPIRE_CHUNK = processor_module._EXPIRE_CHUNK, 1  # the feed runs between every chat
    try:
        async def run():
            n, pending = 0, []
            for step in script:
                if step[0] == "scan":
                    pending.append(proc.expire_idle())
                    continue
                records, n = raw_records(step[1], n, partitions)
                await asyncio.gather(proc.process(records), *pending)
                pending = []
            await asyncio.gather(*pending)
        asyncio.run(run())
    finally:
        processor_module._EXPIRE_CHUNK = chunk
    filed, census = sorted(proc.index.filed()), proc.index.census(proc.names)
    assert filed == sorted(chats)  # every chat filed once, none that is gone
    asyncio.run(proc.resend_unsent())  # the index as one pass over the table makes it
    assert (filed, census) == (sorted(proc.index.filed()), proc.index.census(proc.names))
