"""The ingress's produce batcher, against a fake producer: batches, acks, failures, the timeout."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError
from aiokafka.partitioner import DefaultPartitioner

from connectors.ingress.batching import ProduceBatcher

PARTITIONS = {0, 1, 2, 3, 4, 5}


class FakeBuilder:
    def __init__(self, room: int) -> None:
        self.records, self.room = [], room

    def append(self, *, key, value, timestamp):
        if len(self.records) >= self.room:
            return None
        self.records.append((key, value))
        return object()


class FakeProducer:
    """What the batcher uses of AIOKafkaProducer; every batch's ack is a future the test settles."""

    def __init__(self, room: int = 100) -> None:
        self.room = room
        self.client = type("Client", (), {})()
        self.client.cluster = type("Cluster", (), {"partitions_for_topic": staticmethod(lambda topic: PARTITIONS)})()
        self.sent: list[tuple[str, int, FakeBuilder, asyncio.Future]] = []

    def create_batch(self) -> FakeBuilder:
        return FakeBuilder(self.room)

    async def send_batch(self, builder, topic, *, partition):
        ack = asyncio.get_running_loop().create_future()
        self.sent.append((topic, partition, builder, ack))
        return ack


async def _until(condition, turns: int = 50) -> None:
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def test_concurrent_requests_share_a_batch_and_return_only_on_its_ack():
    async def scenario():
        producer = FakeProducer()
        batcher = ProduceBatcher(producer, timeout=5)
        requests = [asyncio.create_task(batcher.send([("raw", b"v%d" % i, b"same-chat")])) for i in range(5)]
        await _until(lambda: producer.sent)
        await asyncio.sleep(0.01)
        assert len(producer.sent) == 1 and not any(r.done() for r in requests)
        topic, partition, builder, ack = producer.sent[0]
        assert builder.records == [(b"same-chat", b"v%d" % i) for i in range(5)]
        ack.set_result(object())
        await asyncio.gather(*requests)

    asyncio.run(scenario())


def test_partition_is_aiokafkas_default_for_the_key():
    async def scenario():
        producer = FakeProducer()
        batcher = ProduceBatcher(producer, timeout=5)
        keys = [b"acme:%d" % i for i in range(40)]
        task = asyncio.create_task(batcher.send([("raw", b"v", key) for key in keys]))
        await _until(lambda: len({p for _, p, _, _ in producer.sent}) == len({
            DefaultPartitioner()(k, list(PARTITIONS), list(PARTITIONS)) for k in keys}))
        for _, partition, builder, ack in producer.sent:
            assert all(DefaultPartitioner()(k, list(PARTITIONS), list(PARTITIONS)) == partition
                       for k, _ in builder.records)
            ack.set_result(object())
        await task

    asyncio.run(scenario())


def test_a_full_batch_starts_another_and_both_must_be_acked():
    async def scenario():
        producer = FakeProducer(room=2)
        batcher = ProduceBatcher(producer, timeout=5)
        task = asyncio.create_task(batcher.send([("raw", b"v%d" % i, b"chat") for i in range(3)]))
        await _until(lambda: len(producer.sent) == 2)
        producer.sent[0][3].set_result(object())
        await asyncio.sleep(0.01)
        assert not task.done()
        producer.sent[1][3].set_result(object())
        await task

    asyncio.run(scenario())


def test_a_failed_batch_fails_every_request_in_it():
    async def scenario():
        producer = FakeProducer()
        batcher = ProduceBatcher(producer, timeout=5)
        requests = [asyncio.create_task(batcher.send([("raw", b"v", b"chat")])) for _ in range(3)]
        await _until(lambda: producer.sent)
        producer.sent[0][3].set_exception(KafkaConnectionError())
        results = await asyncio.gather(*requests, return_exceptions=True)
        assert all(isinstance(r, KafkaConnectionError) for r in results)
        assert len({id(r) for r in results}) == 3  # a copy each

    asyncio.run(scenario())


def test_an_unacknowledged_batch_times_out():
    async def scenario():
        producer = FakeProducer()
        batcher = ProduceBatcher(producer, timeout=0.2)
        started = asyncio.get_running_loop().time()
        with pytest.raises(asyncio.TimeoutError):
            await batcher.send([("raw", b"v", b"chat")])
        assert 0.15 < asyncio.get_running_loop().time() - started < 1.0

    asyncio.run(scenario())


def test_a_cancelled_request_leaves_the_others_waiting_for_the_ack():
    async def scenario():
        producer = FakeProducer()
        batcher = ProduceBatcher(producer, timeout=5)
        first, second = (asyncio.create_task(batcher.send([("raw", b"v", b"chat")])) for _ in range(2))
        await _until(lambda: producer.sent)
        first.cancel()
        await asyncio.sleep(0)
        assert not second.done()
        producer.sent[0][3].set_result(object())
        await second

    asyncio.run(scenario())
