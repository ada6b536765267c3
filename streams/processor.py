"""What the worker does with a batch of raw records, apart from Faust.

The agent and the timers hand records and ticks to a ContactProcessor, which reads
and writes chat state through plain mappings (the Faust tables in production, dicts
in unit tests) and emits contacts through an injected coroutine that returns only
once Kafka acknowledged them. Contacts are acknowledged before the state that says
"emitted" is written: a crash in between re-emits the same contact_id, never loses it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, MutableMapping

import orjson

from streams.chat import ChatState, Closed, apply, expire
from streams.contact import UNDEFINED_QUEUE, build_contact, contact_key, queue_for
from streams.events import ChatEvent, Skip, normalise_or_skip
from streams.worker_metrics import WorkerMetrics

__all__ = ["ContactProcessor", "Emit"]

logger = logging.getLogger(__name__)

Emit = Callable[[list[tuple[bytes, bytes]]], Awaitable[None]]
def _write(table: MutableMapping[bytes, bytes], items: dict[bytes, bytes]) -> None:
    """Item by item: a Faust table's update() reaches for the store's `.data`, which
    only the memory store has; on rocksdb:// it raises AttributeError."""
    for key, value in items.items():
        table[key] = value


_SEP = b"\x00"  # pending keys: <chat key> NUL <cycle>; a NUL never occurs in a chat key


class ContactProcessor:
    """Applies raw events to chat state and turns closed cycles into contacts."""

    def __init__(self, *, chats: MutableMapping[bytes, bytes], pending: MutableMapping[bytes, bytes],
                 names, emit: Emit, metrics: WorkerMetrics, expiry_ms: int, group_wait_ms: int,
                 partition_of: Callable[[bytes], int], clock: Callable[[], float] = time.time) -> None:
        self.chats, self.pending, self.names, self.emit = chats, pending, names, emit
        self.metrics, self.expiry_ms, self.group_wait_ms = metrics, expiry_ms, group_wait_ms
        self.partition_of, self.clock = partition_of, clock
        self.watermarks: dict[int, int] = {}
        self._lock = asyncio.Lock()  # the agent and the timers must not interleave on one chat

    async def process(self, records: list[tuple[bytes | None, bytes, int]]) -> None:
        """Apply a batch; one table write per chat, after its contacts are acknowledged."""
        async with self._lock:
            await self._process(records)

    async def _process(self, records) -> None:
        states: dict[bytes, ChatState] = {}
        ready: list[tuple[bytes, bytes]] = []
        waiting: dict[bytes, bytes] = {}
        for key, value, partition in records:
            event = self._event(value)
            if event is None:
                continue
            chat = event.chat_key.encode()
            self.watermarks[partition] = max(self.watermarks.get(partition, event.at), event.at)
            state = states[chat] if chat in states else self._load(chat)
            state, closed, verdict = apply(state, event, self.expiry_ms)
            states[chat] = state
            self.metrics.events.inc(kind=event.kind, verdict=verdict)
            if event.group_name and event.group_id:
                self.names.learn(event.integration, event.group_id, event.group_name)
            self._route(event.integration, event.conversation_id, closed, ready, waiting)
        await self._send(ready)
        _write(self.chats, {chat: state.dumps() for chat, state in states.items()})
        _write(self.pending, waiting)

    def _event(self, value: bytes) -> ChatEvent | None:
        try:
            envelope = orjson.loads(value)
        except orjson.JSONDecodeError:
            envelope = None
        event = normalise_or_skip(envelope)
        if isinstance(event, Skip):
            self.metrics.skipped.inc(reason=event.reason)
            return None
        return event

    def _load(self, chat: bytes) -> ChatState | None:
        raw = self.chats.get(chat)
        return ChatState.loads(raw) if raw is not None else None

    def _route(self, integration: str, conversation: str, closed: list[Closed], ready: list, waiting: dict) -> None:
        """Emit closed cycles whose queue is known; park the others until the name arrives."""
        for cycle in closed:
            queue = queue_for(cycle, self.names.for_integration(integration))
            if queue is not None:
                ready.append(self._contact(integration, conversation, cycle, queue))
                continue
            self.names.request_refresh(integration)
            record = {"integration": integration, "conversation_id": conversation,
                      "closed": _closed_json(cycle), "deadline": self._now_ms() + self.group_wait_ms}
            key = f"{integration}:{conversation}".encode() + _SEP + str(cycle.cycle).encode()
            waiting[key] = bytes(memoryview(orjson.dumps(record)))  # kept: no 4 KiB orjson buffer

    def _contact(self, integration: str, conversation: str, cycle: Closed, queue: str) -> tuple[bytes, bytes]:
        contact = build_contact(integration, conversation, cycle, queue, self._now_ms())
        self.metrics.contacts.inc(queue=queue, outcome=cycle.outcome)
        self.metrics.emission_delay.observe((self._now_ms() - cycle.resolved_at) / 1000, queue=queue)
        return contact_key(integration, queue), orjson.dumps(contact)

    async def _send(self, ready: list[tuple[bytes, bytes]]) -> None:
        if ready:
            await self.emit(ready)

    async def release_pending(self) -> None:
        """Emit parked contacts whose group name arrived, or whose wait is over (Undefined_Queue)."""
        async with self._lock:
            await self._release_pending()

    async def _release_pending(self) -> None:
        ready, done = [], []
        now = self._now_ms()
        for key, raw in list(self.pending.items()):
            record = orjson.loads(raw)
            cycle = Closed(**{**record["closed"], "counts": tuple(record["closed"]["counts"])})
            queue = queue_for(cycle, self.names.for_integration(record["integration"]))
            if queue is None and now < record["deadline"]:
                continue
            if queue is None:
                self.metrics.group_timeouts.inc(integration=record["integration"])
                queue = UNDEFINED_QUEUE
            ready.append(self._contact(record["integration"], record["conversation_id"], cycle, queue))
            done.append(key)
        await self._send(ready)
        for key in done:
            del self.pending[key]

    async def expire_idle(self) -> None:
        """Close cycles idle past the expiry (in event time) and forget long-closed chats."""
        async with self._lock:
            await self._expire_idle()

    async def _expire_idle(self) -> None:
        ready, waiting, changed, forgotten = [], {}, {}, []
        census = _OpenChats()
        for chat, raw in list(self.chats.items()):
            decoded = ChatState.loads(raw)
            census.count(chat, decoded, self.names)
            watermark = self.watermarks.get(self.partition_of(chat))
            if watermark is None:
                continue
            state, closed = expire(decoded, watermark, self.expiry_ms)
            if state is None:
                forgotten.append(chat)
            elif closed:
                integration, _, conversation = chat.decode().partition(":")
                self._route(integration, conversation, closed, ready, waiting)
                changed[chat] = state.dumps()
        await self._send(ready)
        _write(self.chats, changed)
        _write(self.pending, waiting)
        for chat in forgotten:
            del self.chats[chat]
        census.publish(self.metrics, self._now_ms())

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)


class _OpenChats:
    """Open chats per queue and the oldest one's start, counted during the expiry scan."""

    def __init__(self) -> None:
        self.by_queue: dict[str, int] = {}
        self.oldest: int | None = None

    def count(self, chat: bytes, state: ChatState, names) -> None:
        if not state.open:
            return
        integration = chat.decode(errors="replace").partition(":")[0]
        queue = names.for_integration(integration).get(state.group_id) or state.group_name or UNDEFINED_QUEUE
        self.by_queue[queue] = self.by_queue.get(queue, 0) + 1
        if state.started_at is not None and (self.oldest is None or state.started_at < self.oldest):
            self.oldest = state.started_at

    def publish(self, metrics: WorkerMetrics, now_ms: int) -> None:
        metrics.open_chats.values.clear()
        for queue, n in self.by_queue.items():
            metrics.open_chats.set(n, queue=queue)
        metrics.oldest_open_chat.set(0 if self.oldest is None else max(0, now_ms - self.oldest) / 1000)


def _closed_json(cycle: Closed) -> dict:
    return {name: getattr(cycle, name) for name in Closed.__slots__}

