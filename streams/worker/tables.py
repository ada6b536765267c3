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


async def read_tail(consumer, tps: list[TopicPartition], timeout: float = 30.0) -> list:
    """Records from the last listed batch to the fetch high watermark of each partition.

    `consumer` is an unstarted aiokafka consumer; read_tail starts and stops it.
    """
    await consumer.start()
    try:
        consumer.assign(tps)
        listed = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(0, listed[tp] - 1))
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
