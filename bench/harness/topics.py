"""Kafka for the benchmarks: produce a load, and read a topic's end or the contacts on it.

Partition ends come from fetch high watermarks, not end_offsets(): the embedded broker's
ListOffsets lags (docs/reference.md).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import orjson
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from connectors.kafka.clients import client_options, make_consumer, make_producer
from harness.processes import BenchError, wait_for
from streams.domain.contact import revision_order
from streams.domain.times import parse_time
from streams.settings import Settings

__all__ = ["create_topic", "produce", "preload", "topic_end", "Held", "Contacts", "TopicWatch"]


async def create_topic(settings: Settings, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def produce(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    """Send every record (acks=all, big batches, long linger); seconds until all were acknowledged."""
    producer = make_producer(settings, linger_ms=50, max_batch_size=512 * 1024)
    await producer.start()
    started = time.perf_counter()
    try:
        futures = []
        for key, value in records:
            futures.append(await producer.send(topic, value, key=key))
            if len(futures) >= 20_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def preload(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Produce a load and check the topic holds it (ends from fetch high watermarks)."""
    seconds = await produce(settings, topic, records)
    held = await topic_end(settings, topic)
    print(f"  pre-loaded {len(records):,} records into {topic} in {seconds:.1f} s "
          f"({len(records) / seconds:,.0f}/s); the topic holds {held:,}", flush=True)
    if held != len(records):
        raise BenchError(f"{topic} holds {held:,} records, not the {len(records):,} produced")


async def topic_end(settings: Settings, topic: str, timeout: float = 30.0) -> int:
    """Records on a topic: the sum of its partitions' fetch high watermarks."""
    watch = TopicWatch(settings, topic)
    await watch.start()
    try:
        return await watch.total(timeout)
    finally:
        await watch.stop()


@dataclass(frozen=True)
class Held:
    """The record a contact_id stands at: its place in the revision order, and what the checks look at."""

    order: tuple[int, str]  # streams.domain.contact.revision_order: what a consumer keeps the highest of
    emitted_ms: int  # emitted_at in epoch ms (0 without one): the throughput figure's end
    retracted: bool
    undefined: bool = False
    without_history: bool = False  # no user message or no group: the chat's earlier events were not applied

    @classmethod
    def of(cls, contact: dict) -> "Held":
        """Tolerant of records without `revision`/`retracted` (older workers: revision 1) or a body."""
        order = revision_order(contact)
        emitted_ms = parse_time(contact["emitted_at"]) if contact.get("emitted_at") else 0
        if contact.get("retracted"):
            return cls(order, emitted_ms, True)
        messages = contact.get("messages") or {}
        return cls(order, emitted_ms, False, contact.get("queue") == "Undefined_Queue",
                   not messages.get("user") or contact.get("group_id") is None)

    def replaces(self, other: "Held | None") -> bool:
        """Higher revision, or the same one emitted later (a re-emission after a crash) or as late."""
        return other is None or self.order >= other.order


@dataclass
class Contacts:
    """What a TopicWatch has read from a contacts topic so far, one entry per contact_id.

    Workers may write a contact_id more than once (revisions, retractions), so the checks
    count live ids (highest revision not retracted), not records.
    """

    records: int = 0
    held: dict[str, Held] = field(default_factory=dict)
    live: int = 0  # kept as records arrive: read_contacts polls it after every fetch
    last_emitted_ms: int = 0
    last_seen: float = 0.0  # wall clock when the latest record was read

    def add(self, value: bytes) -> None:
        contact = orjson.loads(value)
        self.records += 1
        new, old = Held.of(contact), self.held.get(contact["contact_id"])
        if new.replaces(old):
            self.held[contact["contact_id"]] = new
            self.live += (not new.retracted) - (old is not None and not old.retracted)
        self.last_emitted_ms = max(self.last_emitted_ms, new.emitted_ms)
        self.last_seen = time.time()

    @property
    def ids(self) -> set[str]:
        """The live contact ids."""
        return {cid for cid, held in self.held.items() if not held.retracted}

    @property
    def undefined(self) -> int:
        return sum(held.undefined for held in self.held.values() if not held.retracted)

    @property
    def without_history(self) -> int:
        return sum(held.without_history for held in self.held.values() if not held.retracted)


class TopicWatch:
    """A plain consumer over every partition of a topic, from the beginning.

    Partition ends come from fetch high watermarks (consumer.highwater after a getmany),
    not end_offsets(): the embedded broker's ListOffsets lags (docs/reference.md).
    """

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self.consumer = make_consumer(settings, fetch_max_wait_ms=100)
        self.tps: list[TopicPartition] = []
        self.contacts = Contacts()

    async def start(self) -> None:
        await self.consumer.start()
        await self.consumer.topics()
        partitions = self.consumer.partitions_for_topic(self.topic)
        if not partitions:
            raise BenchError(f"topic {self.topic} does not exist")
        self.tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self.consumer.assign(self.tps)
        await self.consumer.seek_to_beginning(*self.tps)

    async def stop(self) -> None:
        await self.consumer.stop()

    async def _read(self, keep: bool) -> None:
        for records in (await self.consumer.getmany(*self.tps, timeout_ms=200)).values():
            for record in records:
                if keep:
                    self.contacts.add(record.value)

    async def total(self, timeout: float = 30.0) -> int:
        """Records on the topic: the sum of every partition's fetch high watermark."""
        async def known() -> bool:
            await self.consumer.getmany(*self.tps, timeout_ms=200, max_records=1)
            return all(self.consumer.highwater(tp) is not None for tp in self.tps)

        await wait_for(known, timeout, f"high watermarks of {self.topic}", interval=0)
        return sum(self.consumer.highwater(tp) for tp in self.tps)

    async def read_contacts(self, count: int, timeout: float) -> Contacts:
        """Read contacts until `count` contact ids are live (records alone may be revisions)."""
        async def enough() -> bool:
            await self._read(keep=True)
            return self.contacts.live >= count

        try:
            await wait_for(enough, timeout, f"{count:,} contacts on {self.topic}", interval=0)
        except BenchError as exc:
            raise BenchError(f"{exc} (got {self.contacts.live:,} live ids in "
                             f"{self.contacts.records:,} records)") from None
        return self.contacts

    async def drain(self, timeout: float = 30.0) -> Contacts:
        """Read contacts up to every partition's high watermark."""
        async def at_end() -> bool:
            await self._read(keep=True)
            for tp in self.tps:
                end = self.consumer.highwater(tp)
                if end is None or await self.consumer.position(tp) < end:
                    return False
            return True

        await wait_for(at_end, timeout, f"the end of {self.topic}", interval=0)
        return self.contacts
