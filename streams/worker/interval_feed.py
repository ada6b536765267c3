"""The interval statistics' reader of the contacts topic: fetched batches straight from aiokafka.

Why not a second Faust agent: measured on bench/throughput.py, an agent that only consumed
the contacts topic cost ~12% of the worker's events/s in Faust's per-record path (a task, a
channel, a Stream event and an ack per record), more than the whole aggregation. The
aggregator needs none of that: it is idempotent per state key (each remembers the last
contacts offset that changed it, streams/domain/intervals.py), so it needs no consumer
group either. The feed reads the contacts partitions whose numbers this worker holds
actively (where the interval tables live, as the raw and contacts topics have as many
partitions), from the position it wrote to its own table after the batch before; a crash
only moves it back, and a record read twice changes nothing twice.

While Faust rebalances or recovers tables the feed holds still, and a revocation waits for
the batch in hand to finish (`on_partitions_revoked`), so no batch writes to a table
partition that has moved.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, MutableMapping

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from streams.domain.intervals import IntervalAggregator

__all__ = ["IntervalFeed", "LINGER_S"]

LINGER_S = 0.1  # how long a batch waits for more contacts once the first arrive

logger = logging.getLogger(__name__)


class IntervalFeed:
    """Reads the contacts partitions the worker holds and hands each fetched batch to the aggregator."""

    def __init__(self, app, *, contacts_topic: str, raw_topic: str, aggregator: IntervalAggregator,
                 positions: MutableMapping[bytes, bytes], consumer: Callable[[], Any], max_records: int) -> None:
        self.app, self.contacts_topic, self.raw_topic = app, contacts_topic, raw_topic
        self.aggregator, self.positions, self.make_consumer = aggregator, positions, consumer
        self.max_records = max_records
        self.assigned: frozenset[int] = frozenset()
        self.highwaters: dict[int, int] = {}  # per partition, the end seen in the last fetch (for the lag gauge)
        self.read: dict[int, int] = {}  # per partition, the next offset to apply
        self._batch = asyncio.Lock()  # held while a batch is applied: a revocation waits for it
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="interval-feed")
        self.app.on_partitions_revoked.connect(self._on_revoked)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _on_revoked(self, sender, revoked, **kwargs) -> None:
        async with self._batch:  # the batch in hand finishes before the tables move
            self.assigned = frozenset()
            self.aggregator.forget()

    def lag(self):
        """Contacts records not yet applied, per partition held: the feed's own lag."""
        for partition in sorted(self.assigned):
            end = self.highwaters.get(partition)
            if end is not None:
                yield {"partition": str(partition)}, max(0, end - self.read.get(partition, 0))

    def _wanted(self) -> frozenset[int]:
        app = self.app
        if not app.tables.recovery.completed.is_set() or app.rebalancing or app.in_recovery:
            return frozenset()
        return frozenset(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == self.raw_topic)

    async def _run(self) -> None:
        consumer = self.make_consumer()
        await consumer.start()
        try:
            while True:
                try:
                    await self._step(consumer)
                except KafkaError as exc:  # the broker away: the worker's own health says so; try again
                    logger.warning("interval statistics: reading %s failed (%s); retrying", self.contacts_topic, exc)
                    await asyncio.sleep(1.0)
        finally:
            await consumer.stop()

    async def _step(self, consumer) -> None:
        wanted = self._wanted()
        if wanted != self.assigned:
            async with self._batch:
                self._assign(consumer, wanted)
        if not self.assigned:
            await asyncio.sleep(0.2)
            return
        fetched = await self._fetch(consumer)
        async with self._batch:
            if self._wanted() != self.assigned:
                return  # a rebalance began while fetching: these records are read again after it
            for tp, records in fetched.items():
                if tp.partition not in self.assigned or not records:
                    continue
                await self.aggregator.process([(r.key, r.value, r.offset) for r in records])
                self.read[tp.partition] = records[-1].offset + 1
                self.positions[str(tp.partition).encode()] = str(self.read[tp.partition]).encode()
            for tp in fetched:
                end = consumer.highwater(tp)
                if end is not None:
                    self.highwaters[tp.partition] = end

    async def _fetch(self, consumer) -> dict:
        """Up to max_records, gathered for at most LINGER_S after the first arrive: the cost of a
        batch is mostly per interval it changes, so ten contacts of a queue in one batch cost
        little more than one."""
        fetched = await consumer.getmany(timeout_ms=200, max_records=self.max_records)
        count = sum(len(records) for records in fetched.values())
        deadline = asyncio.get_running_loop().time() + LINGER_S
        while 0 < count < self.max_records and (left := deadline - asyncio.get_running_loop().time()) > 0:
            more = await consumer.getmany(timeout_ms=max(1, int(left * 1000)), max_records=self.max_records - count)
            for tp, records in more.items():
                fetched.setdefault(tp, []).extend(records)
                count += len(records)
        return fetched

    def _assign(self, consumer, wanted: frozenset[int]) -> None:
        """Take the partitions held now, each from the position written after its last batch."""
        tps = [TopicPartition(self.contacts_topic, p) for p in sorted(wanted)]
        consumer.assign(tps)
        self.aggregator.forget()  # what another worker wrote meanwhile is read from the tables
        for tp in tps:
            raw = self.positions.get(str(tp.partition).encode())
            self.read[tp.partition] = int(raw) if raw is not None else 0
            consumer.seek(tp, self.read[tp.partition])
        self.assigned = wanted
        if wanted:
            logger.info("interval statistics: reading %s partitions %s", self.contacts_topic, sorted(wanted))
