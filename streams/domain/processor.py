"""What the worker does with a batch of raw records, apart from Faust.

The agent and the timers hand records and ticks to a ContactProcessor, which reads
and writes chat state through plain mappings (the Faust tables in production, dicts
in unit tests) and emits contacts through an injected coroutine that returns only
once Kafka acknowledged them. The chat states that record a batch's revisions are
acknowledged first, then the revisions (streams/domain/write_ahead.py), so a crash can repeat
a revision but never lose or renumber one. The chat state remembers per cycle the last
revision written and the queue it went to, so a change becomes exactly the records
streams.domain.contact.revision_plan prescribes (a revision, a retraction, or both for a move).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, MutableMapping

import orjson

from streams.domain.chat import ChatState, Change, Closed, Outcome, apply, closed_cycles, digest, expire
from streams.domain.contact import UNDEFINED_QUEUE, build_contact, build_retraction, queue_for, revision_plan
from streams.domain.events import ChatEvent, Skip, normalise_or_skip
from streams.domain.expiry_index import Entry, ExpiryIndex
from streams.domain.keys import chat_of_pending_key, contact_key, pending_key, split_chat_key
from streams.domain.metrics import OpenChatCensus, WorkerMetrics
from streams.domain.write_ahead import RESEND, WriteAhead

__all__ = ["ContactProcessor", "Emit"]

logger = logging.getLogger(__name__)

Emit = Callable[[list[tuple[bytes, bytes]]], Awaitable[None]]
_NOT_APPLIED = {Outcome.DUPLICATE, Outcome.LATE}
_EXPIRE_CHUNK = 100  # chats the expiry scan handles per hold of the lock: a pause of milliseconds
_WRITES_IN_FLIGHT = 2000  # a table write holds its value and a send until Kafka acks it: bound the peak


def _write(table: MutableMapping[bytes, bytes], items: dict[bytes, bytes]) -> None:
    """Item by item: a Faust table's update() reaches for the store's `.data`, which
    only the memory store has; on rocksdb:// it raises AttributeError."""
    for key, value in items.items():
        table[key] = value


class _Batch:
    """What one batch or scan will write: contacts to send, parked contacts, pending keys to drop."""

    def __init__(self) -> None:
        self.ready: list[tuple[bytes, bytes]] = []
        self.waiting: dict[bytes, bytes] = {}
        self.released: set[bytes] = set()
        self.marked: set[int] = set()  # partitions of the chats whose states mark revisions written ahead
        self.before: dict[bytes, Entry | None] = {}  # where each loaded chat was filed in the expiry index

    def park(self, key: bytes, value: bytes) -> None:
        self.waiting[key] = value
        self.released.discard(key)

    def unpark(self, key: bytes) -> None:
        self.waiting.pop(key, None)
        self.released.add(key)


class _Group:
    """The records staged since the last commit: their chats' states, and what their batch writes."""

    def __init__(self) -> None:
        self.states: dict[bytes, ChatState] = {}
        self.batch = _Batch()
        self.records = 0


class ContactProcessor:
    """Applies raw events to chat state and turns changed cycles into contact revisions."""

    def __init__(self, *, chats: MutableMapping[bytes, bytes], pending: MutableMapping[bytes, bytes],
                 names, emit: Emit, metrics: WorkerMetrics, expiry_ms: int, group_wait_ms: int,
                 partition_of: Callable[[bytes], int], clock: Callable[[], float] = time.time,
                 tombstone_ms: int = 90 * 86_400_000, skew_ms: int = 300_000,
                 flush: Callable[[], Awaitable[None]] | None = None,
                 confirmed: MutableMapping[bytes, bytes] | None = None) -> None:
        self.chats, self.pending, self.names, self.emit, self.flush = chats, pending, names, emit, flush
        self.metrics, self.expiry_ms, self.group_wait_ms = metrics, expiry_ms, group_wait_ms
        self.partition_of, self.clock = partition_of, clock
        self.tombstone_ms, self.skew_ms = tombstone_ms, skew_ms
        self.watermarks: dict[int, int] = {}
        self.write_ahead = WriteAhead({} if confirmed is None else confirmed, partition_of)
        self.index = ExpiryIndex(expiry_ms, tombstone_ms)  # rebuilt by resend_unsent after recovery
        self.resent = 0  # contacts re-sent for a dead writer, logged once per batch or scan
        self._lock = asyncio.Lock()  # the agent and the timers must not interleave on one chat
        self._group: _Group | None = None  # staged records not committed yet (stage / commit_staged)
        self._unsettled: set[bytes] = set()  # chats whose marked revisions a failed send left unsent
        self._taken: set[bytes] = set()  # chats the expiry scan took from the index and has not handled yet

    async def process(self, records: list[tuple[bytes | None, bytes, int]]) -> None:
        """Apply a batch: one table write per chat, acknowledged before the contacts it records are sent."""
        async with self._lock:
            self._stage(records)
            await self._commit_staged()

    async def stage(self, records: list[tuple[bytes | None, bytes, int]]) -> None:
        """Apply records to the open group without writing anything: a group is one batch fed in
        parts, so a chat touched by many fetches is loaded, written and its contacts sent once per
        group (`commit_staged`), not once per fetch. The caller acknowledges the records' offsets only
        after that commit: until then a crash loses nothing that is not read again."""
        async with self._lock:
            self._stage(records)

    @property
    def staged(self) -> int:
        """Records applied to the open group and not yet committed."""
        return self._group.records if self._group is not None else 0

    async def commit_staged(self) -> None:
        """Write the open group as one batch: its chat states, then its contacts (write-ahead)."""
        async with self._lock:
            await self._commit_staged()

    async def _commit_staged(self) -> None:
        group, self._group = self._group, None
        if group is not None:
            await self._commit(group.batch, group.states)

    def _stage(self, records) -> None:
        group = self._group
        if group is None:
            group = self._group = _Group()
        group.records += len(records)
        states, batch = group.states, group.batch
        for key, value, partition in records:
            event = self._event(value)
            if event is None:
                continue
            chat = event.chat_key.encode()
            ahead = self._advance_watermark(partition, event)
            state = states[chat] if chat in states else self._load(chat, batch)
            state, changes, verdict = apply(state, event, self.expiry_ms)
            states[chat] = state
            self.metrics.count_event(event.kind, Outcome.FUTURE_TIME
                                     if ahead and verdict not in _NOT_APPLIED else verdict)
            if event.group_name and event.group_id:
                self.names.learn(event.integration, event.group_id, event.group_name)
            if changes:
                self._route(chat, state, changes, batch)

    async def _commit(self, batch: _Batch, states: dict[bytes, ChatState], forgotten=()) -> None:
        """Write ahead, then emit (streams/domain/write_ahead.py): parked contacts and the chat states,
        which mark the revisions about to be sent, are acknowledged first; then the contacts;
        then the confirmation. A crash before the states are acknowledged leaves the events to
        be folded again into the same revisions; a crash after leaves marks to re-send."""
        _write(self.pending, batch.waiting)
        items = list(states.items())
        for start in range(0, len(items), _WRITES_IN_FLIGHT):  # a group's writes, a few thousand in flight at a time
            if start and self.flush is not None:
                await self.flush()
            _write(self.chats, {chat: state.dumps() for chat, state in items[start:start + _WRITES_IN_FLIGHT]})
        for chat in forgotten:
            del self.chats[chat]
        index, before, taken = self.index, batch.before, self._taken
        for chat, state in states.items():
            index.move(chat, self.partition_of(chat), before.get(chat), index.entry(chat, state))
            taken.discard(chat)
        for chat in forgotten:
            index.move(chat, self.partition_of(chat), before.get(chat), None)
            taken.discard(chat)
        if batch.ready:
            if self.flush is not None:
                await self.flush()
            try:
                await self.emit(batch.ready)
            except BaseException:
                self.write_ahead.abandon()
                self._unsettled.update(chat for chat in states if states[chat].unsent)
                raise
            _write(self.write_ahead.confirmed, self.write_ahead.confirmations(batch.marked))
        if self.resent:
            logger.info("re-sent the last revisions of %d contact(s) that a previous worker had written ahead",
                        self.resent)
            self.metrics.resent.inc(self.resent)
            self.resent = 0
        for key in batch.released:
            if key in self.pending:
                del self.pending[key]

    def _advance_watermark(self, partition: int, event: ChatEvent) -> bool:
        """Move the partition's event-time watermark; True when the event is dated too far ahead
        of its arrival, which then counts only as received_at + skew."""
        at, ahead = event.at, False
        if event.received_at is not None and at > event.received_at + self.skew_ms:
            at, ahead = event.received_at + self.skew_ms, True
        if at > self.watermarks.get(partition, at - 1):
            self.watermarks[partition] = at
        return ahead

    def _event(self, value: bytes) -> ChatEvent | None:
        try:
            envelope = orjson.loads(value)
        except orjson.JSONDecodeError:
            envelope = None
        event = normalise_or_skip(envelope)
        if isinstance(event, Skip):
            self.metrics.skipped.labels(event.reason).inc()
            return None
        return event

    def _load(self, chat: bytes, batch: _Batch) -> ChatState | None:
        raw = self.chats.get(chat)
        if raw is None:
            return None
        state = ChatState.loads(raw)
        batch.before[chat] = self.index.entry(chat, state)
        self._adopt(chat, state, batch)
        return state

    def _adopt(self, chat: bytes, state: ChatState, batch: _Batch) -> bool:
        """Settle a loaded state's write-ahead marks (re-sending a dead writer's); True when that changed it."""
        verdict = self.write_ahead.settle(chat, state)
        if verdict == RESEND:
            self._resend(chat, state, batch)
            self.write_ahead.adopt(chat, state, batch.marked)
        return verdict is not None

    def _resend(self, chat: bytes, state: ChatState, batch: _Batch) -> None:
        """Each marked cycle's retractions and last revision, with their own numbers, rebuilt
        from the state as it was written: a repeat of what may or may not have been sent."""
        integration, conversation = split_chat_key(chat)
        facts = closed_cycles(state, self.expiry_ms)
        now = self._now_ms()
        for cycle, retractions in state.unsent.items():
            for queue, revision in retractions:
                batch.ready.append(_record(build_retraction(integration, conversation, cycle, queue, revision, now)))
            revision, _, queue = state.emitted.get(cycle, (0, None, None))
            if queue is not None and cycle in facts:  # (a cycle frozen since has nothing to rebuild from)
                batch.ready.append(_record(build_contact(integration, conversation, facts[cycle], queue, now,
                                                         revision)))
        self.resent += len(state.unsent)

    def _route(self, chat: bytes, state: ChatState, changes: list[Change], batch: _Batch) -> None:
        """Emit each changed cycle whose queue is known; park the others until the name arrives."""
        integration, conversation = split_chat_key(chat)
        for change in changes:
            key = pending_key(chat, change.cycle)
            if change.closed is None:
                self._emit(chat, state, change.cycle, None, None, batch)
                batch.unpark(key)
                continue
            queue = queue_for(change.closed, self.names.for_integration(integration))
            if queue is not None:
                self._emit(chat, state, change.cycle, change.closed, queue, batch)
                batch.unpark(key)
                continue
            self.names.request_refresh(integration)
            revision, _, old_queue = state.emitted.get(change.cycle, (0, None, None))
            state.emitted[change.cycle] = [revision, digest(change.closed), old_queue]
            record = {"integration": integration, "conversation_id": conversation,
                      "closed": _closed_json(change.closed), "deadline": self._now_ms() + self.group_wait_ms}
            batch.park(key, bytes(memoryview(orjson.dumps(record))))  # kept: no 4 KiB orjson buffer

    def _emit(self, chat: bytes, state: ChatState, cycle: int, closed: Closed | None, queue: str | None,
              batch: _Batch) -> None:
        """Write the records that take a contact from its last emitted revision to `closed` in `queue`."""
        integration, conversation = split_chat_key(chat)
        revision, _, old_queue = state.emitted.get(cycle, (0, None, None))
        now = self._now_ms()
        plan = revision_plan(revision, old_queue, queue)
        for revision, target, retracted in plan:  # revision ends as the last one written
            if retracted:
                record = build_retraction(integration, conversation, cycle, target, revision, now)
                self.metrics.retractions.labels(target).inc()
            else:
                record = build_contact(integration, conversation, closed, target, now, revision)
                self._count(closed, target, revision)
            batch.ready.append(_record(record))
        if plan:
            retractions = [[target, number] for number, target, retracted in plan if retracted]
            self.write_ahead.mark(chat, state, cycle, retractions, batch.marked)
        state.emitted[cycle] = [revision, digest(closed) if closed else None, queue]

    def _count(self, closed: Closed, queue: str, revision: int) -> None:
        if revision > 1:
            self.metrics.revisions.labels(queue).inc()
            return
        self.metrics.contacts.labels(queue, closed.outcome).inc()
        self.metrics.emission_delay.labels(queue).observe((self._now_ms() - closed.resolved_at) / 1000)

    async def release_pending(self) -> None:
        """Emit parked contacts whose group name arrived, or whose wait is over (Undefined_Queue)."""
        async with self._lock:
            await self._release_pending()

    async def _release_pending(self) -> None:
        await self._commit_staged()  # the open group's states first: this reads the tables
        batch, states = _Batch(), {}
        now = self._now_ms()
        unsettled, self._unsettled = self._unsettled, set()
        for chat in unsettled:  # loading settles their marks: a failed send's are re-sent now
            state = self._load(chat, batch)
            if state is not None:
                states[chat] = state
        for key, raw in list(self.pending.items()):
            record = orjson.loads(raw)
            cycle = Closed(**{**record["closed"], "counts": tuple(record["closed"]["counts"])})
            queue = queue_for(cycle, self.names.for_integration(record["integration"]))
            if queue is None and now < record["deadline"]:
                continue
            if queue is None:
                self.metrics.group_timeouts.labels(record["integration"]).inc()
                queue = UNDEFINED_QUEUE
            chat = chat_of_pending_key(key)
            state = states.get(chat) or self._load(chat, batch) or ChatState()
            states[chat] = state
            self._emit(chat, state, cycle.cycle, cycle, queue, batch)
            batch.released.add(key)
        await self._commit(batch, states)

    async def expire_idle(self) -> None:
        """Close cycles idle past the expiry (in event time), tombstone long-closed chats, drop old tombstones.

        The chats due are taken from the index at once, then handled `_EXPIRE_CHUNK` at a time, each
        chunk under the lock and written before the next: raw processing waits for one chunk at a
        time, not for the whole scan (a chat written by the feed in between is filed again by that
        write, and the chunk then reads its new state)."""
        async with self._lock:
            await self._commit_staged()
            due = [(partition, watermark, chat) for partition, watermark in list(self.watermarks.items())
                   for chat in self.index.take_due(partition, watermark)]
            self._taken.update(chat for _, _, chat in due)
        for start in range(0, len(due), _EXPIRE_CHUNK):
            async with self._lock:
                held = time.perf_counter()
                await self._commit_staged()  # the open group's states first: this reads the tables
                await self._expire_chunk(due[start:start + _EXPIRE_CHUNK])
                self.metrics.observe_timer("expire_chunk", time.perf_counter() - held)  # the pause it causes
        census = OpenChatCensus()
        census.by_queue, census.oldest = self.index.census(self.names)
        census.publish(self.metrics, self._now_ms())

    async def _expire_chunk(self, due: list) -> None:
        batch, changed, forgotten = _Batch(), {}, []
        index = self.index
        for partition, watermark, chat in due:
            raw = self.chats.get(chat)
            if raw is None:  # deleted, or its partition moved away
                self._taken.discard(chat)
                continue
            state = ChatState.loads(raw)
            entry = index.entry(chat, state)
            if chat in self._taken:  # still unfiled: its census share goes too, and it is filed anew below
                self._taken.discard(chat)
                index.uncount(partition, entry)
                filed = False
            else:  # written since it was taken: that write filed it under `entry`
                batch.before[chat] = entry
                filed = True
            adopted = self._adopt(chat, state, batch)
            state, changes, touched = expire(state, watermark, self.expiry_ms, self.tombstone_ms)
            if state is None:
                forgotten.append(chat)
                continue
            if changes:
                self._route(chat, state, changes, batch)
            if touched or adopted:
                changed[chat] = state
            elif not filed:
                index.move(chat, partition, None, index.entry(chat, state))
        await self._commit(batch, changed, forgotten)

    async def resend_unsent(self) -> None:
        """After table recovery or a rebalance: re-send what a worker that died had written ahead but
        maybe not sent, and file every chat in the expiry index afresh (one pass over the table)."""
        async with self._lock:
            await self._commit_staged()
            batch, changed = _Batch(), {}
            index = self.index
            index.clear()
            self._taken.clear()
            for chat, raw in list(self.chats.items()):
                state = ChatState.loads(raw)
                if self._adopt(chat, state, batch):
                    changed[chat] = state
                else:
                    index.move(chat, self.partition_of(chat), None, index.entry(chat, state))
            await self._commit(batch, changed)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)


def _record(contact: dict) -> tuple[bytes, bytes]:
    return contact_key(contact["integration"], contact["queue"]), orjson.dumps(contact)


def _closed_json(cycle: Closed) -> dict:
    return {name: getattr(cycle, name) for name in Closed.__slots__}

