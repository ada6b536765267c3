"""Replay: rebuild the contacts resolved in a window from the raw topic, with fresh state.

It never joins the live worker's consumer group: it reads the raw topic with an
unassigned consumer up to the partition ends it saw when it started, and runs the
worker's own ContactProcessor over it with in-memory tables, so it folds revisions,
retractions and queue moves exactly as the live run does. It then compares each rebuilt
contact's final revision with the target topic's highest revision of the same contact_id,
and writes what differs as the next revision there. Contact ids are deterministic, so a
second replay of the same window finds everything present and writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from typing import Callable

import orjson
from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from connectors.kafka.clients import make_consumer, make_producer
from connectors.kafka.follower import TopicFollower
from connectors.kafka.topics import ensure_topic, missing_topic, partition_count, true_ends
from streams.domain.contact import build_retraction, final_revisions, revision_plan
from streams.domain.group_names import GroupNames
from streams.domain.keys import chat_of_pending_key, contact_key
from streams.domain.metrics import WorkerMetrics
from streams.domain.processor import ContactProcessor
from streams.domain.times import parse_time
from streams.settings import Settings
from streams.worker.tables import partition_of

__all__ = ["ReplayWindow", "ReplayReport", "replay"]

_UNCOMPARED = {"emitted_at", "revision"}


@dataclass(frozen=True)
class ReplayWindow:
    """Contacts resolved in [since, until) (epoch ms), of one integration or all."""

    since: int
    until: int
    integration: str | None = None
    lookback_ms: int = 7 * 24 * 3600 * 1000


@dataclass
class ReplayReport:
    """What `freshstream replay` prints."""

    rebuilt: int = 0
    present: int = 0
    missing: int = 0
    differing: int = 0
    retracted: int = 0
    differing_ids: list[str] = field(default_factory=list)
    raw_first: int | None = None  # the oldest and newest raw record's time (epoch ms), so that an
    raw_last: int | None = None   # empty window can be answered with what the raw topic does hold

    @property
    def empty(self) -> bool:
        """Nothing in the window to compare: most often a window outside the raw topic's range."""
        return self.rebuilt == 0 and self.retracted == 0

    def counts(self) -> dict:
        return {"rebuilt": self.rebuilt, "present": self.present, "missing": self.missing,
                "differing": self.differing, "retracted": self.retracted}


Progress = Callable[[str, int, int], None]  # (what is being read, records done, records in all)


async def replay(settings: Settings, window: ReplayWindow, target: str, dry_run: bool = False,
                 progress: Progress | None = None, jobs: int = 1) -> ReplayReport:
    """Rebuild, compare with `target`, and write what is missing or differs (unless dry_run);
    `jobs` > 1 folds groups of raw partitions in that many processes."""
    names = await _group_names(settings)
    # the target's consumer and the producer connect while the raw topic is read (waits, not work)
    reader = asyncio.create_task(_target_reader(settings, target))
    writer = None if dry_run or not EARLY_CLIENTS else asyncio.create_task(_started_producer(settings))
    try:
        if not EARLY_CLIENTS:
            await reader
        rebuilt, (first, last), encoded = await _rebuild(settings, window, names, progress, jobs)
        existing, found = await _existing(await reader, target, set(rebuilt), progress)
        report, to_write = _compare(rebuilt, existing, window)
        report.raw_first, report.raw_last = first, last
        if to_write and not dry_run:
            if not found:
                await ensure_topic(settings, target, settings.topic_partitions)
            await _write(await writer if writer else await _started_producer(settings), target, to_write, encoded)
        return report
    finally:
        await _stop_clients(reader, writer)


async def _target_reader(settings: Settings, target: str):
    consumer = make_consumer(settings, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        return consumer, await _partitions(consumer, target)
    except BaseException:
        await consumer.stop()
        raise


async def _started_producer(settings: Settings):
    producer = make_producer(settings, partitioner=_CachedPartitioner())
    await producer.start()
    return producer


async def _stop_clients(*tasks) -> None:
    for task in tasks:
        if task is None:
            continue
        if not task.done():
            task.cancel()
        result = (await asyncio.gather(task, return_exceptions=True))[0]
        if isinstance(result, tuple):
            result = result[0]
        if hasattr(result, "stop"):
            await result.stop()


async def _group_names(settings: Settings) -> GroupNames:
    await partition_count(settings, settings.groups_topic)  # a missing topic would never be "loaded"
    names = GroupNames()
    follower = TopicFollower(settings, settings.groups_topic, names.apply, loaded_level=logging.DEBUG)
    await follower.start()
    try:
        await follower.loaded.wait()
    finally:
        await follower.stop()
    return names


# Levers (bench/replay.py --knob NAME=VALUE measures each against the default):
FETCH_RECORDS = 20_000  # records per getmany, handed to the processor in one call (was 5,000 per partition)
PREFETCH = 2  # fetched batches that may wait while the processor works on one; 0: fetch, then process
KNOWN_PARTITIONS = True  # a chat's partition from the records read, not murmur2 per call
BATCHED_WRITES = True  # contacts appended to one batch per partition, the batches awaited together
EARLY_CLIENTS = True  # the target's consumer and the producer connect while the raw topic is read


def new_processor(settings: Settings, names: GroupNames, partitions: int, emit,
                  where: dict[bytes, int]) -> ContactProcessor:
    """The worker's processor with in-memory tables, as replay runs it.

    `where` is the raw partition of each chat key, filled as records are read (the raw topic
    is keyed by chat, with Kafka's default partitioner); a key not seen there is hashed once."""
    if not KNOWN_PARTITIONS:
        return _processor(settings, names, emit, lambda key: partition_of(key, partitions))

    def partition(key: bytes) -> int:
        found = where.get(key)
        if found is None:
            found = where[key] = partition_of(key, partitions)
        return found

    return _processor(settings, names, emit, partition)


def _processor(settings: Settings, names: GroupNames, emit, partition) -> ContactProcessor:
    return ContactProcessor(
        chats={}, pending={}, names=names, emit=emit, metrics=WorkerMetrics(),
        expiry_ms=settings.chat_expiry_seconds * 1000, group_wait_ms=0, partition_of=partition,
        tombstone_ms=int(settings.chat_tombstone_days * 86_400_000),
        skew_ms=int(settings.event_time_skew_seconds * 1000))


def raw_consumer(settings: Settings):
    return make_consumer(settings, fetch_max_wait_ms=100, max_partition_fetch_bytes=4 * 1024 * 1024)


async def _rebuild(settings: Settings, window: ReplayWindow, names: GroupNames, progress, jobs: int = 1):
    """The worker's processor over every raw record from since − lookback up to the ends seen
    at the start, then its expiry scan at the final watermarks and the release of parked
    contacts: the final revision per contact, the time range of every raw record read, and
    the bytes each final revision was emitted as (by object)."""
    if jobs > 1:
        values, span = await _rebuild_in_parallel(settings, window, names, progress, jobs)
    else:
        processor, sent, span = await _fold(settings, window, names, progress)
        await processor.release_pending()  # names the groups topic does not know: Undefined_Queue now
        values = [value for _, value in sent]
    records = [orjson.loads(value) for value in values]
    rebuilt = {contact_id: record for contact_id, record in final_revisions(records).items()
               if window.integration is None or record["integration"] == window.integration}
    # the bytes of each final revision, written as they are if unchanged; held with the record
    # itself, so that an id() is never that of a freed record reused by another object
    encoded = {id(record): (record, value) for record, value in zip(records, values)
               if rebuilt.get(record["contact_id"]) is record}
    return rebuilt, (span.first, span.last), encoded


async def _fold(settings: Settings, window: ReplayWindow, names: GroupNames, progress,
                only: list[int] | None = None) -> tuple[ContactProcessor, list[tuple[bytes, bytes]], "RawSpan"]:
    """The processor over the raw partitions (or `only` those), then its expiry scan."""
    sent: list[tuple[bytes, bytes]] = []

    async def emit(records: list[tuple[bytes, bytes]]) -> None:
        sent.extend(records)

    consumer = raw_consumer(settings)
    await consumer.start()
    try:
        partitions = await _partitions(consumer, settings.raw_topic)
        if not partitions:
            raise missing_topic(settings, settings.raw_topic)
        where: dict[bytes, int] = {}
        processor = new_processor(settings, names, len(partitions), emit, where)
        mine = partitions if only is None else [tp for tp in partitions if tp.partition in only]
        span = RawSpan()
        if mine:
            await _process_all(raw_batches(consumer, mine, window, where, progress, span), processor)
    finally:
        await consumer.stop()
    await processor.expire_idle()  # the live worker's expiry timer, at the final watermarks
    return processor, sent, span


async def _rebuild_in_parallel(settings: Settings, window: ReplayWindow, names: GroupNames, progress,
                               jobs: int) -> tuple[list[bytes], "RawSpan"]:
    """`jobs` processes, each folding every jobs-th raw partition (a chat's events are all in
    its partition, and so is its state). Each returns its contacts' final revisions and the
    contacts it parked for an unknown group name; those are released here, once, with every
    name any of them learnt from events, as one process releases them after its whole read."""
    count = await partition_count(settings, settings.raw_topic)
    groups = [[p for p in range(count) if p % jobs == j] for j in range(min(jobs, count))]
    context = multiprocessing.get_context("spawn")  # no forked event loop or Kafka sockets
    counts = context.Array("q", 2 * len(groups), lock=False)  # per process: records done, records in all
    loop = asyncio.get_running_loop()
    what = f"raw topic {settings.raw_topic}"
    with ProcessPoolExecutor(len(groups), mp_context=context, initializer=_share_counts,
                             initargs=(counts,)) as pool:
        futures = [loop.run_in_executor(pool, _fold_group, settings, window, names.snapshot(), group, index)
                   for index, group in enumerate(groups)]
        done = asyncio.ensure_future(asyncio.gather(*futures))
        while not done.done():
            await asyncio.wait([done], timeout=0.5)
            if progress:
                progress(what, sum(counts[0::2]), sum(counts[1::2]))
        parts = done.result()
    span, values, chats, pending = RawSpan(), [], {}, {}
    merged = GroupNames()
    merged.restore(names.snapshot())
    for part in parts:
        values += part["values"]
        chats.update(part["chats"])
        pending.update(part["pending"])
        merged.restore(part["names"])
        if part["span"][0] is not None:
            span.add(*part["span"])
    released: list[tuple[bytes, bytes]] = []

    async def emit(records: list[tuple[bytes, bytes]]) -> None:
        released.extend(records)

    processor = new_processor(settings, merged, count, emit, {})
    processor.chats.update(chats)
    processor.pending.update(pending)
    await processor.release_pending()
    return values + [value for _, value in released], span


_counts = None  # in a --jobs process: its share of the progress counters


def _share_counts(counts) -> None:
    global _counts
    _counts = counts


def _fold_group(settings: Settings, window: ReplayWindow, names: dict, partitions: list[int], index: int) -> dict:
    """One --jobs process: fold its partitions; its final revisions, parked contacts and their
    chats' states, the names it knows, and the raw time range it read."""
    def progress(_what: str, done: int, total: int) -> None:
        _counts[2 * index], _counts[2 * index + 1] = done, total

    async def run() -> dict:
        known = GroupNames()
        known.restore(names)
        processor, sent, span = await _fold(settings, window, known, progress, partitions)
        records = [orjson.loads(value) for _, value in sent]
        encoded = {id(record): value for record, (_, value) in zip(records, sent)}
        values = [encoded[id(record)] for record in final_revisions(records).values()]  # decoded here, in parallel
        parked = {chat_of_pending_key(key) for key in processor.pending}
        return {"values": values, "pending": dict(processor.pending),
                "chats": {chat: processor.chats[chat] for chat in parked if chat in processor.chats},
                "names": known.snapshot(), "span": [span.first, span.last]}

    return asyncio.run(run())


class RawSpan:
    """The oldest and newest raw record time (epoch ms) read so far."""

    def __init__(self) -> None:
        self.first: int | None = None
        self.last: int | None = None

    def add(self, low: int, high: int) -> None:
        self.first = low if self.first is None else min(low, self.first)
        self.last = high if self.last is None else max(high, self.last)


async def raw_batches(consumer, partitions, window: ReplayWindow, where: dict[bytes, int], progress,
                      span: RawSpan | None = None):
    """The processor's batches: every raw record up to the ends seen at the start, in fetch-sized
    lists of (key, value, partition) from since − lookback on; `where` learns each key's partition."""
    consumer.assign(partitions)
    ends = await true_ends(consumer, partitions)
    await consumer.seek_to_beginning(*partitions)
    total, done = sum(ends.values()), 0
    cutoff = window.since - window.lookback_ms
    pending = {tp for tp in partitions if ends[tp] > 0}
    what = f"raw topic {partitions[0].topic}"
    if progress:
        progress(what, 0, total)
    while pending:
        batch: list[tuple[bytes | None, bytes, int]] = []
        for tp, records in (await consumer.getmany(*pending, timeout_ms=500, max_records=FETCH_RECORDS)).items():
            end = ends[tp]
            if records and records[-1].offset >= end:
                records = [r for r in records if r.offset < end]
            if records:
                stamps = [r.timestamp for r in records]
                low, high = min(stamps), max(stamps)
                if span is not None:
                    span.add(low, high)
                keys = [r.key for r in records]
                if KNOWN_PARTITIONS:
                    where.update(dict.fromkeys(keys, tp.partition))
                if low >= cutoff:
                    batch += zip(keys, [r.value for r in records], repeat(tp.partition))
                else:
                    batch += [(r.key, r.value, tp.partition) for r in records if r.timestamp >= cutoff]
                done += len(records)
            if await consumer.position(tp) >= end:
                pending.discard(tp)
        if progress:
            progress(what, done, total)
        if batch:
            yield batch


async def _process_all(batches, processor: ContactProcessor) -> None:
    """The processor over `batches`, the next ones fetched and decoded while it works."""
    if not PREFETCH:
        async for batch in batches:
            await processor.process(batch)
        return
    queue: asyncio.Queue = asyncio.Queue(PREFETCH)

    async def fetch() -> None:
        try:
            async for batch in batches:
                await queue.put(batch)
        except BaseException as error:  # handed to the processing side, which raises it
            await queue.put(error)
            raise
        await queue.put(None)

    task = asyncio.create_task(fetch())
    try:
        while (batch := await queue.get()) is not None:
            if isinstance(batch, BaseException):
                raise batch
            await processor.process(batch)
        await task
    finally:
        task.cancel()  # (nothing, when it is done)
        await asyncio.gather(task, return_exceptions=True)


async def _existing(reader, topic: str, wanted: set[str], progress=None) -> tuple[dict[str, dict], bool]:
    """The target topic's highest revision of each rebuilt contact, by contact_id, and whether
    the topic exists; `reader` is a started consumer and the topic's partitions.

    Only those are kept: the target may hold weeks of contacts, the window a few hours'."""
    found: list[dict] = []
    consumer, partitions = reader
    if not partitions:
        return {}, False
    consumer.assign(partitions)
    ends = await true_ends(consumer, partitions)
    await consumer.seek_to_beginning(*partitions)
    pending = {tp for tp in partitions if ends[tp] > 0}
    total, done, what = sum(ends.values()), 0, f"target topic {topic}"
    if progress:
        progress(what, 0, total)
    while pending:
        for tp, records in (await consumer.getmany(*pending, timeout_ms=500)).items():
            for record in records:
                done += record.offset < ends[tp]
                contact = _decoded(record.value)
                if contact is not None and contact.get("contact_id") in wanted:
                    found.append(contact)
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)
        if progress:
            progress(what, done, total)
    return final_revisions(found), True


def _decoded(value: bytes | None) -> dict | None:
    """A contact, or None for anything else a target topic may hold (it is then 'missing')."""
    try:
        doc = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("contact_id"), str) else None


def _in_window(contact: dict, window: ReplayWindow) -> bool:
    resolved = parse_time(contact.get("resolved_at"))
    return resolved is not None and window.since <= resolved < window.until


def _compare(rebuilt: dict[str, dict], existing: dict[str, dict],
             window: ReplayWindow) -> tuple[ReplayReport, list[dict]]:
    """Rebuilt contacts resolved in the window against the target's; what to write there.

    A contact the rebuild retracted is retracted in the target only when the target holds it
    live and resolved in the window; one the rebuild never saw is left alone."""
    report, to_write = ReplayReport(), []
    for contact_id, contact in sorted(rebuilt.items()):
        old = existing.get(contact_id)
        live = old is not None and not old.get("retracted", False)
        if contact["retracted"]:
            if live and _in_window(old, window):
                report.retracted += 1
                to_write += _next_revisions(old, None)
            continue
        if not _in_window(contact, window):
            continue
        report.rebuilt += 1
        if not live:
            report.missing += 1
        elif _same(old, contact):
            report.present += 1
            continue
        else:
            report.differing += 1
            report.differing_ids.append(contact_id)
        to_write += _next_revisions(old, contact)
    return report, to_write


def _next_revisions(old: dict | None, contact: dict | None) -> list[dict]:
    """The records that take the target from `old` to `contact` (None: retract it)."""
    revision = old.get("revision", 1) if old else 0
    old_queue = old["queue"] if old and not old.get("retracted", False) else None
    now = int(time.time() * 1000)
    records = []
    for number, queue, retracted in revision_plan(revision, old_queue, contact["queue"] if contact else None):
        if retracted:
            records.append(build_retraction(old["integration"], old["conversation_id"], old["cycle"], queue,
                                            number, now))
        else:
            records.append(contact if contact["revision"] == number else {**contact, "revision": number})
    return records


def _same(a: dict, b: dict) -> bool:
    return ({k: v for k, v in a.items() if k not in _UNCOMPARED}
            == {k: v for k, v in b.items() if k not in _UNCOMPARED})


async def _write(producer, topic: str, contacts: list[dict], encoded: dict[int, tuple[dict, bytes]]) -> None:
    """Every record acknowledged, or the replay fails loudly; in plan order within a key (a move's
    retraction goes before its new revision), so within its partition. A contact written as the
    processor emitted it keeps the processor's bytes (`encoded`, by object)."""
    if not BATCHED_WRITES:
        futures = [await producer.send(topic, _encoded(c, encoded),
                                       key=contact_key(c["integration"], c["queue"])) for c in contacts]
        await asyncio.gather(*futures)
        return
    count = len(await producer.partitions_for(topic))
    partitioner, keys = _CachedPartitioner(), {}
    batches: dict[int, object] = {}
    futures = []
    for contact in contacts:
        names = contact["integration"], contact["queue"]
        key = keys.get(names) or keys.setdefault(names, contact_key(*names))
        partition = partitioner(key, range(count), None)
        batch = batches.get(partition) or batches.setdefault(partition, producer.create_batch())
        value = _encoded(contact, encoded)
        if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = batches[partition] = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)
    for partition, batch in batches.items():
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    await asyncio.gather(*futures)


def _encoded(contact: dict, encoded: dict[int, tuple[dict, bytes]]) -> bytes:
    known = encoded.get(id(contact))
    return known[1] if known is not None and known[0] is contact else orjson.dumps(contact)


class _CachedPartitioner:
    """Kafka's default partitioner, once per key: a contact key (integration/queue) repeats."""

    def __init__(self) -> None:
        self._default = DefaultPartitioner()
        self._known: dict[tuple[bytes, int], int] = {}

    def __call__(self, key, all_partitions, available):
        if key is None:
            return self._default(key, all_partitions, available)
        found = self._known.get((key, len(all_partitions)))
        if found is None:
            found = self._known[(key, len(all_partitions))] = self._default(key, all_partitions, available)
        return found


async def _partitions(consumer, topic: str) -> list[TopicPartition]:
    await consumer.topics()
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]

