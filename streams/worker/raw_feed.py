"""The raw topic to the processor a fetch at a time, written and acknowledged a group at a time.

Why not a Faust agent: measured on bench/throughput.py, Faust's per-record path (a task and an
`asyncio.wait` per record in the consumer, then the conductor, a channel, a Stream event and an
ack per record) was ~40% of the worker's time, more than freshstream's own work. The transport
(streams/worker/transport.py) hands each fetch of the raw topic here whole instead.

Why groups: a chat's events arrive spread over many fetches, and each table write is a changelog
record. The processor stages fetches into one open group (streams/domain/processor.py) and writes
it as one batch — each changed chat once, then its contacts — when the group is
`commit_seconds` old, holds `max_records`, or the topic ran dry (an idle worker emits at once).
Only then are the group's offsets acknowledged, so Faust never commits an offset whose state
is not written: a crash re-reads the group, and the duplicate rules make that harmless.
"""

from __future__ import annotations

import time
from typing import Awaitable, Callable

from streams.domain.processor import ContactProcessor

__all__ = ["RawFeed"]


class RawFeed:
    """Stages each fetch of `topic`; commits the group and acknowledges its offsets when due."""

    fetch_wait_seconds = 0.1  # a fetch that waits this long in vain commits the open group: idle means now

    def __init__(self, processor: ContactProcessor, topic: str, *, commit_seconds: float, max_records: int,
                 before: Callable[[], Awaitable[None]], after: Callable[[], Awaitable[None]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.processor, self.topic = processor, topic
        self.commit_seconds, self.max_records = commit_seconds, max_records
        self.before, self.after, self.clock = before, after, clock
        self._unacked: dict = {}  # tp -> offsets staged and not acknowledged
        self._opened: float | None = None

    async def take(self, consumer, fetched: dict) -> None:
        """One fetch (tp -> records, possibly empty): staged, then the group committed if it is due."""
        if fetched:
            await self.before()
            rows = []
            for tp, records in fetched.items():
                rows.extend((record.key, record.value, tp.partition) for record in records)
                self._unacked.setdefault(tp, []).extend(record.offset for record in records)
            await self.processor.stage(rows)
            if self._opened is None:
                self._opened = self.clock()
        if self._unacked and (not fetched or self.processor.staged >= self.max_records
                              or self.clock() - self._opened >= self.commit_seconds):
            await self.commit(consumer)

    async def commit(self, consumer) -> None:
        """Write the open group, then acknowledge every offset staged so far."""
        await self.processor.commit_staged()
        unacked, self._unacked, self._opened = self._unacked, {}, None
        for tp, offsets in unacked.items():
            consumer.ack_offsets(tp, offsets)
        await self.after()

    async def drain(self, consumer) -> None:
        """Before a rebalance or a stop: nothing staged is left unwritten or unacknowledged."""
        if self._unacked:
            await self.commit(consumer)
