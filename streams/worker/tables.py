"""Faust tables whose changelog partition follows the key, and whose recovery reaches the true end.

Two departures from faust.Table, both for correctness:
- The changelog partition is computed from the key with Kafka's default partitioner
  (murmur2), as the ingress's producer chose the raw topic partition. So batched
  writes (`take_events`) and timer writes land in the partition their chat lives in,
  instead of the partition of whatever event happens to be current.
- After Faust's recovery, the tail it may have missed is read: the embedded broker's
  ListOffsets answers the base offset of the last batch + 1 (docs/reference.md),
  so Faust stops before the rest of that batch. The tail is read up to the high
  watermark of a fetch response and applied through the store's own changelog path.
"""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any, Callable

import faust
from aiokafka import TopicPartition
from aiokafka.partitioner import murmur2
from faust.stores.memory import Store as MemoryStore
from faust.types import TP
from yarl import URL


__all__ = ["KeyPartitionedTable", "partition_of", "read_tail"]

logger = logging.getLogger(__name__)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives this key (as the ingress's producer did)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class KeyPartitionedTable(faust.Table):
    """A raw-bytes table keyed like the raw topic; the app builder sets `tail_consumer`.

    It also counts the changelog records it sent and has not seen acknowledged, so the worker
    can wait until its writes are acknowledged (`changelog_acked`) before it emits what they
    record: the producer's own flush() can return while a record is between its buffer and
    Kafka's client.
    """

    tail_consumer: Callable[[], Any] | None = None  # makes an unstarted aiokafka consumer for read_tail
    partition_key = staticmethod(lambda key: key)  # which part of the key decides the partition
    _in_flight = 0  # changelog records sent and not yet acknowledged
    _drained: asyncio.Event | None = None
    _failure: BaseException | None = None

    def send_changelog(self, *args, **kwargs):
        future = super().send_changelog(*args, **kwargs)
        self._in_flight += 1
        future.add_done_callback(self._on_acked)
        return future

    def _on_acked(self, future) -> None:
        """Count, not keep: holding every future until a wait would grow with writes that never wait."""
        self._in_flight -= 1
        if not future.cancelled() and future.exception() is not None and self._failure is None:
            self._failure = future.exception()
        if self._in_flight == 0 and self._drained is not None:
            self._drained.set()

    def changelog_backlog(self) -> int:
        """Changelog records sent and not yet acknowledged (each holds its value until then)."""
        return self._in_flight

    async def changelog_acked(self) -> None:
        """Return once every changelog record sent so far is acknowledged; raise if one failed."""
        while self._in_flight:
            self._drained = asyncio.Event()
            if self._in_flight:
                await self._drained.wait()
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def partition_for_key(self, key: bytes) -> int:
        return partition_of(self.partition_key(key), self.partitions)

    def _new_store_by_url(self, url):
        if URL(str(url)).scheme == "memory":
            return BulkRecoveredMemory(
                url, self.app, self, table_name=self.name, key_type=self.key_type,
                key_serializer=self.key_serializer, value_serializer=self.value_serializer,
                value_type=self.value_type, loop=self.loop, options=self.options)
        if URL(str(url)).scheme != "rocksdb":
            return super()._new_store_by_url(url)
        from streams.worker.rocksdb_store import KeyPartitionedRocksDB  # rocksdict is an optional extra
        return KeyPartitionedRocksDB(
            url, self.app, self, table_name=self.name, key_type=self.key_type,
            key_serializer=self.key_serializer, value_serializer=self.value_serializer,
            value_type=self.value_type, loop=self.loop, options=self.options)

    async def on_recovery_completed(self, active_tps, standby_tps) -> None:
        changelog = self.changelog_topic.get_topic_name()
        tps = [TopicPartition(tp.topic, tp.partition) for tp in active_tps if tp.topic == changelog]
        if tps and self.tail_consumer is not None:
            records = await read_tail(self.tail_consumer(), tps)
            if records:
                logger.info("%s: applied %d changelog records past the listed end", self.name, len(records))
                self.apply_changelog_batch([_as_event(r) for r in records])
        await super().on_recovery_completed(active_tps, standby_tps)


class BulkRecoveredMemory(MemoryStore):
    """The memory store, which reads a newly assigned changelog partition itself, whole, in bulk.

    Faust recovers a table one changelog record at a time through its consumer's per-message
    path (a task and an `asyncio.wait` per record, then a queue with a timeout per record): with
    100,000 open chats that was most of a restart. Before Faust's recovery looks at a partition
    (the table's on_rebalance runs first), this reads it from its beginning to the high watermark
    of a fetch with a plain consumer, applies it in batches, and reports the last offset read as
    persisted, so Faust's own recovery starts there and finds nothing left, or the few records
    written since.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self._read_to: dict[TP, int] = {}

    async def on_rebalance(self, assigned, revoked, newly_assigned, generation_id: int = 0) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        table = self.table
        changelog = table.changelog_topic.get_topic_name()
        for tp in revoked:
            self._read_to.pop(TP(changelog, tp.partition), None)
        fresh = sorted({tp.partition for tp in newly_assigned} - {tp.partition for tp in self._read_to})
        if not fresh or table.tail_consumer is None:
            return
        tps = [TopicPartition(changelog, partition) for partition in fresh]
        records = await read_tail(table.tail_consumer(), tps, from_beginning=True)
        for start in range(0, len(records), 10_000):
            table.apply_changelog_batch([_as_event(r) for r in records[start:start + 10_000]])
        for record in records:
            self._read_to[TP(record.topic, record.partition)] = record.offset
        if records:
            logger.info("%s: read %d changelog records of %d partition(s) in bulk", table.name, len(records), len(tps))

    def persisted_offset(self, tp: TP) -> int | None:
        return self._read_to.get(tp)


async def read_tail(consumer, tps: list[TopicPartition], timeout: float = 30.0, from_beginning: bool = False) -> list:
    """Records from the last listed batch (or the beginning) to the fetch high watermark of each partition.

    `consumer` is an unstarted aiokafka consumer; read_tail starts and stops it.
    """
    await consumer.start()
    try:
        consumer.assign(tps)
        listed = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(0, listed[tp] - 1))
        if from_beginning:  # the fetch above finds the high watermark; then read from the start
            await consumer.getmany(*tps, timeout_ms=200, max_records=1)
            await consumer.seek_to_beginning(*tps)
        records, pending = [], set(tps)
        deadline = asyncio.get_running_loop().time() + timeout
        while pending and asyncio.get_running_loop().time() < deadline:
            for batch in (await consumer.getmany(*pending, timeout_ms=200)).values():
                records.extend(batch)
            pending = {tp for tp in pending
                       if consumer.highwater(tp) is None or await consumer.position(tp) < consumer.highwater(tp)}
        return records
    finally:
        await consumer.stop()


def _as_event(record) -> SimpleNamespace:
    """The shape of faust.Event that the stores' apply_changelog_batch reads."""
    message = SimpleNamespace(key=record.key, value=record.value, partition=record.partition,
                              offset=record.offset, tp=TP(record.topic, record.partition))
    return SimpleNamespace(key=record.key, value=record.value, message=message)
