"""Kafka for the benchmarks: produce a load, and read a topic's end, the contacts or the intervals on it.

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

__all__ = ["create_topic", "produce", "preload", "topic_end", "Held", "Contacts", "Intervals", "TopicWatch", "Finals",
           "read_finals", "topics_named", "changelog_records"]


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


@dataclass
class Intervals:
    """What a TopicWatch has read from an intervals topic: the latest revision of each interval.

    The figures are complete when the latest revisions' `contacts` sum to the contacts
    expected; `completed_ms` is the last `updated_at` read at the moment the sum became
    exactly that (again, should it have left it), `after` the records read since.
    """

    expected: int
    records: int = 0
    latest: dict[tuple, tuple[int, int]] = field(default_factory=dict)  # interval -> (revision, contacts)
    total: int = 0  # contacts summed over the latest revisions, kept as records arrive
    last_updated_ms: int = 0
    completed_ms: int | None = None
    after: int = 0
    last_seen: float = 0.0  # wall clock when the latest record was read

    def add(self, value: bytes) -> None:
        record = orjson.loads(value)
        self.records += 1
        key = (record["integration"], record["queue"], record["interval_start"], record["interval_minutes"],
               record["attribution"])
        was, old = self.total, self.latest.get(key)
        if old is None or record["revision"] >= old[0]:  # an equal revision: a re-emission, same figures
            self.latest[key] = (record["revision"], record["contacts"])
            self.total += record["contacts"] - (old[1] if old else 0)
        self.last_updated_ms = max(self.last_updated_ms, parse_time(record["updated_at"]) or 0)
        if self.total == self.expected and was != self.expected:
            self.completed_ms, self.after = self.last_updated_ms, 0
        elif self.completed_ms is not None:
            self.after += 1
        self.last_seen = time.time()

    @property
    def complete(self) -> bool:
        return self.total == self.expected


class TopicWatch:
    """A plain consumer over every partition of a topic, from the beginning, its records
    added to `into` (a Contacts unless told otherwise, e.g. Intervals).

    Partition ends come from fetch high watermarks (consumer.highwater after a getmany),
    not end_offsets(): the embedded broker's ListOffsets lags (docs/reference.md).
    """

    def __init__(self, settings: Settings, topic: str, into: "Contacts | Intervals | None" = None) -> None:
        self.topic = topic
        self.consumer = make_consumer(settings, fetch_max_wait_ms=100)
        self.tps: list[TopicPartition] = []
        self.into = Contacts() if into is None else into

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
                    self.into.add(record.value)

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
            return self.into.live >= count

        try:
            await wait_for(enough, timeout, f"{count:,} contacts on {self.topic}", interval=0)
        except BenchError as exc:
            raise BenchError(f"{exc} (got {self.into.live:,} live ids in "
                             f"{self.into.records:,} records)") from None
        return self.into

    async def read_intervals(self, timeout: float) -> Intervals:
        """Read interval records until their latest revisions sum to the contacts expected."""
        intervals: Intervals = self.into

        async def complete() -> bool:
            await self._read(keep=True)
            return intervals.complete

        try:
            await wait_for(complete, timeout, f"{intervals.expected:,} contacts in the intervals on {self.topic}",
                           interval=0)
        except BenchError as exc:
            raise BenchError(f"{exc} (got {intervals.total:,} in {len(intervals.latest):,} intervals, "
                             f"{intervals.records:,} records)") from None
        return intervals

    async def drain(self, timeout: float = 30.0) -> "Contacts | Intervals":
        """Read records up to every partition's high watermark."""
        async def at_end() -> bool:
            await self._read(keep=True)
            for tp in self.tps:
                end = self.consumer.highwater(tp)
                if end is None or await self.consumer.position(tp) < end:
                    return False
            return True

        await wait_for(at_end, timeout, f"the end of {self.topic}", interval=0)
        return self.into


class Finals:
    """What a TopicWatch has read from a contacts topic, kept whole: the final record of each
    contact_id (streams.domain.contact.revision_order, retractions included), to compare two
    subjects' contacts field by field."""

    def __init__(self) -> None:
        self.records = 0
        self.final: dict[str, dict] = {}

    def add(self, value: bytes) -> None:
        record = orjson.loads(value)
        self.records += 1
        known = self.final.get(record["contact_id"])
        if known is None or revision_order(record) > revision_order(known):
            self.final[record["contact_id"]] = record

    def comparable(self, ignore: tuple[str, ...] = ("emitted_at",)) -> dict[str, dict]:
        """contact_id -> the final record without the fields that differ run to run."""
        return {cid: {k: v for k, v in record.items() if k not in ignore} for cid, record in self.final.items()}


async def read_finals(settings: Settings, topic: str, timeout: float = 60.0) -> Finals:
    """Every record of a (finished) contacts topic, folded to the final one per contact_id."""
    watch = TopicWatch(settings, topic, Finals())
    await watch.start()
    try:
        return await watch.drain(timeout)
    finally:
        await watch.stop()


async def topics_named(settings: Settings, keep) -> list[str]:
    """The broker's topics whose name `keep(name)` accepts, sorted (e.g. a subject's changelogs)."""
    consumer = make_consumer(settings)
    await consumer.start()
    try:
        return sorted(name for name in await consumer.topics() if keep(name))
    finally:
        await consumer.stop()


async def changelog_records(settings: Settings, keep) -> dict[str, int]:
    """Records on each changelog topic `keep` accepts (fetch high watermarks), by topic."""
    return {name: await topic_end(settings, name) for name in await topics_named(settings, keep)}
