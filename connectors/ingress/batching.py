"""Records of concurrent requests, sent to Kafka in one batch per partition, one ack per batch.

`producer.send` costs every record a coroutine, a partitioner call (murmur2 in pure
Python), an accumulator append and a future of its own, and the ingress used to await
each ack under a timer of its own. Here a request appends its records to the open batch
of each record's partition (an aiokafka `BatchBuilder`) and waits on one plain future
per batch it touched; a short-lived task per partition hands the batches to
`producer.send_batch` in order, one at a time (aiokafka holds a partition's next batch
until the sender has taken the previous one, as it does with its own batches), and one
timer per batch fails its waiters with TimeoutError when Kafka has not acknowledged it
within the produce timeout. The contract does not change: a request's waiters resolve
only once Kafka acknowledged (acks=all) the batch that holds each of its records.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque

from aiokafka.partitioner import murmur2

__all__ = ["ProduceBatcher"]

_KEY_CACHE = 65_536  # murmur2 of this many recent keys (a chat's events share one), then start over
_OPEN_FOR = 0.05  # seconds a batch takes new records: a late joiner keeps nearly all of its timeout


class _Batch:
    __slots__ = ("builder", "waiters", "timer", "opened", "settled")

    def __init__(self, builder, opened: float) -> None:
        self.builder, self.opened = builder, opened
        self.waiters: list[asyncio.Future] = []
        self.timer: asyncio.TimerHandle | None = None
        self.settled = False

    def settle(self, exc: BaseException | None) -> None:
        if self.settled:
            return
        self.settled = True
        if self.timer is not None:
            self.timer.cancel()
        for waiter in self.waiters:
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:  # a copy each: one instance raised in many tasks would grow one traceback
                    waiter.set_exception(copy.copy(exc))
        self.waiters.clear()

    def expire(self) -> None:
        self.timer = None
        self.settle(asyncio.TimeoutError())

    def acked(self, future: asyncio.Future) -> None:
        if future.cancelled():
            self.settle(asyncio.CancelledError())
        else:
            self.settle(future.exception())


class ProduceBatcher:
    """Batches per (topic, partition) across the requests of one event-loop turn and beyond."""

    def __init__(self, producer, timeout: float) -> None:
        self.producer, self.timeout = producer, timeout
        self._queues: dict[tuple[str, int], deque[_Batch]] = {}
        self._lanes: dict[tuple[str, int], asyncio.Task] = {}
        self._hashes: dict[bytes, int] = {}

    async def send(self, records) -> None:
        """Append (topic, value, key) records and return once Kafka acknowledged all of them.

        Raises what the producer raised, or asyncio.TimeoutError after the produce timeout.
        """
        loop = asyncio.get_running_loop()
        cluster = self.producer.client.cluster
        waiters: list[asyncio.Future] = []
        last = None
        for topic, value, key in records:
            partitions = cluster.partitions_for_topic(topic)
            if partitions is None:  # metadata not known yet: ask for it, within the produce timeout
                async with asyncio.timeout(self.timeout):
                    partitions = await self.producer.partitions_for(topic)
            batch = self._append(loop, topic, self._partition(key, partitions), key, value)
            if batch is not last:
                waiter = loop.create_future()
                batch.waiters.append(waiter)
                waiters.append(waiter)
                last = batch
        try:
            for waiter in waiters:
                await waiter
        except BaseException:
            for waiter in waiters:  # a request stops at the first failure; the rest are not read
                waiter.add_done_callback(_discard_result)
            raise

    def _partition(self, key: bytes, partitions) -> int:
        """aiokafka's DefaultPartitioner (Java-compatible murmur2 of the key), with a cache."""
        digest = self._hashes.get(key)
        if digest is None:
            if len(self._hashes) >= _KEY_CACHE:
                self._hashes.clear()
            digest = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        ordered = list(partitions)
        return ordered[digest % len(ordered)]

    def _append(self, loop, topic: str, partition: int, key: bytes, value: bytes) -> _Batch:
        tp = (topic, partition)
        queue = self._queues.get(tp)
        if queue is None:
            queue = self._queues[tp] = deque()
        now = loop.time()
        batch = queue[-1] if queue else None
        if batch is None or now - batch.opened > _OPEN_FOR or \
                batch.builder.append(key=key, value=value, timestamp=None) is None:
            batch = _Batch(self.producer.create_batch(), now)
            batch.timer = loop.call_at(now + self.timeout, batch.expire)
            if batch.builder.append(key=key, value=value, timestamp=None) is None:
                raise ValueError("a record does not fit in an empty batch")  # max_batch_size < max_request_size
            queue.append(batch)
        if tp not in self._lanes:
            self._lanes[tp] = loop.create_task(self._lane(tp))  # first runs after this turn's requests
        return batch

    async def _lane(self, tp: tuple[str, int]) -> None:
        """Hand the partition's batches to aiokafka in order; ends when none is left."""
        queue = self._queues[tp]
        try:
            while queue:
                batch = queue.popleft()
                if batch.settled:  # timed out before it was handed over: nobody waits for it
                    continue
                try:
                    acked = await self.producer.send_batch(batch.builder, tp[0], partition=tp[1])
                except Exception as exc:  # noqa: BLE001 - every waiter of the batch gets it
                    batch.settle(exc)
                    continue
                acked.add_done_callback(batch.acked)
        finally:
            del self._lanes[tp]
            if queue:  # cancelled mid-way: nothing will send the rest
                for batch in queue:
                    batch.settle(asyncio.CancelledError())
                queue.clear()


def _discard_result(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()
