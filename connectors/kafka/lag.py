"""Consumer lag, measured exactly, and a monitor that says when a consumer has stalled.

Partition ends come from fetch high watermarks (the embedded broker's ListOffsets lags);
lag in seconds is now minus the timestamp of the record at the committed offset, read
from the broker, never interpolated from rates. LagMonitor measures the worker's own group
every few seconds, so its figures are the ones an operator's `freshstream lag` shows; a
partition that has lag but whose committed offset has not moved for `stall_seconds` means
the consumer silently stopped, and /healthz fails.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from connectors.kafka.clients import client_options, make_consumer
from connectors.kafka.topics import true_ends
from connectors.service import Service
from streams.settings import Settings

__all__ = ["PartitionLag", "measure_lag", "group_summary", "LagMonitor", "consumer_groups", "group_members"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartitionLag:
    """One row of `freshstream lag --json` (docs/operations.md, Lag)."""

    group: str
    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int
    lag_seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


async def measure_lag(settings: Settings, groups: list[str] | None = None, now=time.time,
                      topics: list[str] | None = None) -> list[PartitionLag]:
    """Lag of every partition each consumer group has committed on (all groups by default).

    With `topics`, every partition of those topics is included even before the group's
    first commit (committed None, lag counted from the start of the log).
    """
    consumer = make_consumer(settings, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        every = await _all_partitions(consumer)
        committed = await _committed(settings, groups, every)
        for offsets in committed.values():
            for tp in every:
                if topics and tp.topic in topics:
                    offsets.setdefault(tp, -1)
        names = sorted(committed)
        partitions = sorted({tp for offsets in committed.values() for tp in offsets})
        if not partitions:
            return []
        consumer.assign(partitions)
        starts = await consumer.beginning_offsets(partitions)
        ends = await true_ends(consumer, partitions)
        rows = []
        for group in names:
            for tp, offset in sorted(committed[group].items()):
                rows.append(await _row(consumer, group, tp, offset, starts[tp], ends[tp], now))
        return rows
    finally:
        await consumer.stop()


async def _all_partitions(consumer) -> list[TopicPartition]:
    topics = await consumer.topics()
    return [TopicPartition(topic, p) for topic in sorted(topics)
            for p in sorted(consumer.partitions_for_topic(topic) or ())]


async def _committed(settings: Settings, groups: list[str] | None, partitions) -> dict:
    """Committed offsets per group, asked for every partition explicitly.

    The embedded broker drops the connection when OffsetFetch asks for "all partitions";
    naming them works on it and on Kafka alike. Partitions never committed are left out.
    """
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        names = groups or sorted(str(g[0]) for g in await admin.list_consumer_groups())
        offsets = {group: await admin.list_consumer_group_offsets(group, partitions=partitions) for group in names}
    finally:
        await admin.close()
    return {group: {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}
            for group, found in offsets.items()}


async def consumer_groups(settings: Settings) -> list[str]:
    """Every consumer group the broker knows, so that a misspelt --group is named, not shown as no lag."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        return sorted(str(g[0]) for g in await admin.list_consumer_groups())
    finally:
        await admin.close()


async def group_members(settings: Settings, groups: list[str]) -> dict[str, list[str]]:
    """The member ids of each group: lag with no members is a consumer that died, not a slow one.

    One DescribeGroups request per group: the embedded broker drops the connection when
    one request names several."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        members = {}
        for group in groups:
            response = await admin.describe_consumer_groups([group])
            members[group] = sorted(_member_name(m) for r in response for g in r.groups for m in g[5])  # g[5]: members
        return members
    finally:
        await admin.close()


def _member_name(member) -> str:
    """Kafka's member id starts with the client id; the host, where the broker reports one, says which machine."""
    member_id, host = member[0], member[2]  # (member_id, client_id, client_host, metadata, assignment)
    return f"{member_id}@{host.lstrip('/')}" if host else member_id


async def _row(consumer, group: str, tp: TopicPartition, offset: int, start: int, end: int,
               now) -> PartitionLag:
    position = offset if offset >= 0 else start
    lag = max(end - position, 0)
    seconds = 0.0
    if lag:
        consumer.seek(tp, position)
        records = (await consumer.getmany(tp, timeout_ms=2000, max_records=1)).get(tp, [])
        if records:
            seconds = max(0.0, round(now() - records[0].timestamp / 1000, 3))
    return PartitionLag(group, tp.topic, tp.partition, offset if offset >= 0 else None, end, lag, seconds)


def group_summary(rows: list[PartitionLag]) -> dict[str, dict]:
    """Per group: total lag, the worst lag in seconds, and how many partitions lag."""
    summary: dict[str, dict] = {}
    for row in rows:
        entry = summary.setdefault(row.group, {"lag": 0, "lag_seconds": 0.0, "partitions": 0, "lagging": 0})
        entry["lag"] += row.lag
        entry["lag_seconds"] = max(entry["lag_seconds"], row.lag_seconds)
        entry["partitions"] += 1
        entry["lagging"] += row.lag > 0
    return summary


class LagMonitor(Service):
    """Latest lag rows of one group on one topic, and a stall verdict."""

    def __init__(self, settings: Settings, group: str, topic: str, clock=time.monotonic) -> None:
        super().__init__()
        self.settings, self.group, self.topic, self.clock = settings, group, topic, clock
        self.rows: list[PartitionLag] = []
        self._progress: dict[int, tuple[int | None, float]] = {}  # partition → (committed, when it moved)

    def observe(self, rows: list[PartitionLag]) -> None:
        """Record a measurement; a partition makes progress when caught up or its offset moves."""
        now = self.clock()
        self.rows = [r for r in rows if r.topic == self.topic]
        for row in self.rows:
            committed, since = self._progress.get(row.partition, (None, now))
            if row.lag == 0 or row.committed != committed:
                since = now
            self._progress[row.partition] = (row.committed, since)

    def stalled(self) -> list[int]:
        """Partitions with lag whose committed offset has not moved for stall_seconds."""
        now = self.clock()
        return sorted(r.partition for r in self.rows if r.lag > 0
                      and now - self._progress[r.partition][1] > self.settings.stall_seconds)

    def gauge(self, field: str):
        """A metrics callback yielding (labels, value) per partition."""
        def samples():
            for row in self.rows:
                yield {"topic": row.topic, "partition": str(row.partition)}, getattr(row, field)
        return samples

    @Service.task
    async def _measure(self) -> None:
        """A failed measurement is only a warning: the rows kept still judge stalls, the next one may succeed."""
        while True:
            try:
                self.observe(await measure_lag(self.settings, [self.group], topics=[self.topic]))
            except (KafkaError, OSError, TimeoutError) as exc:
                logger.warning("lag measurement failed: %s", exc)
            await asyncio.sleep(self.settings.lag_check_seconds)
