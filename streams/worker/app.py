"""The Faust worker: the one module that declares agents, tables and timers.

Thin shells around ContactProcessor: the agent reads batches of raw records and
hands them over; timers release contacts waiting for a group name and expire idle
chats. Its settings come from one Settings object; what it needs from beyond the
stream (Kafka credentials, the group-name feed, integration health, lag) arrives as
WorkerEdges, built by the `worker` verb, so imports run from connectors/ into streams/
and never back.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import socket
import time
from pathlib import Path

import faust

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from streams.domain.group_names import GroupNames
from streams.domain.interval_figures import ATTRIBUTIONS, INTERVAL_MINUTES
from streams.domain.intervals import IntervalAggregator
from streams.domain.keys import chat_of_pending_key, queue_of_interval_key
from streams.domain.metrics import WorkerMetrics
from streams.domain.processor import ContactProcessor
from streams.errors import SettingsError
from streams.metrics import CONTENT_TYPE, CallbackGauge
from streams.settings import Settings
from streams.worker.interval_feed import IntervalFeed
from streams.worker.raw_feed import RawFeed
from streams.worker.tables import KeyPartitionedTable, partition_of
from streams.worker.transport import App

__all__ = ["build_app", "check_settings", "WorkerEdges", "WorkerParts"]

logger = logging.getLogger(__name__)


@dataclass
class WorkerEdges:
    """What the worker takes from beyond the stream: built by connectors/cli/worker.py."""

    names: GroupNames  # group id -> name, fed from Freshchat's API and the groups topic
    tail_consumer: Callable[[], Any]  # an unstarted aiokafka consumer, for reading changelog tails
    broker_credentials: Any = None  # Faust's broker_credentials (TLS, SASL); None for plaintext
    services: Sequence[Any] = ()  # started with the worker (start/stop), stopped before it shuts down
    gauges: Sequence[CallbackGauge] = ()  # more series for /metrics
    stalled: Callable[[], list] = field(default=lambda: [])  # partitions whose consumer stopped: /healthz 503


@dataclass
class WorkerParts:
    """What build_app wires together, kept for the CLI and tests to reach."""

    app: faust.App
    processor: ContactProcessor
    names: GroupNames
    metrics: WorkerMetrics
    edges: WorkerEdges
    intervals: IntervalAggregator | None = None  # None when FRESHSTREAM_INTERVALS_ENABLED is off


def check_settings(settings: Settings) -> None:
    """Faust finds a bad store or guarantee only while its services start, and then logs a
    traceback that names neither variable; checked first, the user reads which one to fix."""
    scheme = settings.worker_store.partition("://")[0]
    if scheme not in ("memory", "rocksdb"):
        raise SettingsError(f"FRESHSTREAM_WORKER_STORE={settings.worker_store!r}: use memory:// or rocksdb://")
    if scheme == "rocksdb" and importlib.util.find_spec("rocksdict") is None:
        raise SettingsError("FRESHSTREAM_WORKER_STORE=rocksdb:// needs rocksdict: install it with "
                            "pip install -e '.[rocksdb]', or use memory://")
    if settings.interval_minutes not in INTERVAL_MINUTES:
        raise SettingsError(f"FRESHSTREAM_INTERVAL_MINUTES={settings.interval_minutes}: use 15, 30 or 60")
    if settings.interval_attribution not in ATTRIBUTIONS:
        raise SettingsError(f"FRESHSTREAM_INTERVAL_ATTRIBUTION={settings.interval_attribution!r}: use started "
                            "(the interval the cycle started in) or resolved")
    if settings.processing_guarantee not in ("at_least_once", "exactly_once"):
        raise SettingsError(f"FRESHSTREAM_PROCESSING_GUARANTEE={settings.processing_guarantee!r}: use "
                            "at_least_once or exactly_once (exactly_once needs real Kafka)")


def _faust_app(settings: Settings, partitions: int, web_port: int, credentials) -> faust.App:
    return App(
        settings.worker_app_id, fetch_max_wait_ms=settings.worker_fetch_max_wait_ms, broker=f"kafka://{settings.bootstrap}", store=settings.worker_store,
        broker_credentials=credentials,
        topic_partitions=partitions, key_serializer="raw", value_serializer="raw",
        processing_guarantee=settings.processing_guarantee, producer_acks=-1,
        broker_session_timeout=6, broker_heartbeat_interval=1, broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest", stream_wait_empty=False, table_standby_replicas=0,
        # web_bind is where Faust's web server listens (its default is every interface);
        # web_host is only the name it advertises, which a wildcard address cannot be.
        web_bind=settings.worker_web_host, web_host=_advertised(settings.worker_web_host),
        web_port=web_port, Table=KeyPartitionedTable,
        producer_max_request_size=settings.max_body_bytes + 65536,
        datadir=str(Path(settings.data_dir) / "faust"),
        # Faust compares a RocksDB's persisted offset with ListOffsets, which the embedded
        # broker answers short of the true end; tables.py reads to the real end instead.
        recovery_consistency_check=False)


def _advertised(host: str) -> str:
    return socket.gethostname() if host in ("", "0.0.0.0", "::") else host


def build_app(settings: Settings, partitions: int, web_port: int, edges: WorkerEdges) -> WorkerParts:
    """Declare the worker's topics, tables, agent, timers and pages."""
    app = _faust_app(settings, partitions, web_port, edges.broker_credentials)
    names = edges.names
    raw = app.topic(settings.raw_topic, key_serializer="raw", value_serializer="raw")
    chats = app.Table("chats", partitions=partitions, key_type=bytes, value_type=bytes)
    pending = app.Table("pending", partitions=partitions, key_type=bytes, value_type=bytes)
    pending.partition_key = chat_of_pending_key
    # b"<incarnation>@<partition>" -> the last batch that incarnation sent, kept in that partition
    confirmed = app.Table("confirmed", partitions=partitions, key_type=bytes, value_type=bytes)
    confirmed.partition_for_key = lambda key: int(key.rsplit(b"@", 1)[1])
    for table in (chats, pending, confirmed):
        table.tail_consumer = edges.tail_consumer
    metrics = WorkerMetrics()
    for gauge in edges.gauges:
        metrics.add(gauge)

    async def emit(records: list[tuple[bytes, bytes]]) -> None:
        futures = [await app.producer.send(settings.contacts_topic, key, value, None, None, None)
                   for key, value in records]
        await asyncio.gather(*futures)

    processor = ContactProcessor(
        chats=chats, pending=pending, names=names, emit=emit, metrics=metrics,
        expiry_ms=settings.chat_expiry_seconds * 1000, group_wait_ms=int(settings.group_wait_seconds * 1000),
        partition_of=lambda key: partition_of(key, partitions),
        tombstone_ms=int(settings.chat_tombstone_days * 86_400_000),
        skew_ms=int(settings.event_time_skew_seconds * 1000),
        flush=lambda: _acked(chats, pending), confirmed=confirmed)

    metrics.add(CallbackGauge("freshstream_worker_recovery_remaining",
                      "Changelog records still to read before the tables are recovered, per changelog partition.",
                      lambda: _recovery_remaining(app)))
    metrics.add(CallbackGauge("freshstream_worker_tables_recovered",
                      "1 once table recovery is complete (the worker is then ready), else 0.",
                      lambda: [({}, 1 if app.tables.recovery.completed.is_set() else 0)]))

    async def before_fetch() -> None:
        await _pause_while(settings.debug_pause_file)

    async def after_commit() -> None:
        await _publish_names(app, settings, names)
        if chats.changelog_backlog() > 2 * settings.worker_batch_size:
            await chats.changelog_acked()  # bounded: the worker never runs far ahead of its changelog

    # No agent: the transport hands every fetch of the raw topic to the feed (streams/worker/raw_feed.py).
    app.topics.add(raw)
    app.raw_feed = RawFeed(processor, settings.raw_topic, commit_seconds=settings.worker_commit_seconds,
                           max_records=settings.worker_batch_size, before=before_fetch, after=after_commit)

    indexed = [None]  # the consumer generation whose tables the processor last passed over

    @app.timer(1.0)
    async def release_pending():
        # Each processor call below holds the processing lock throughout: its duration is the pause
        # it causes to raw processing (freshstream_worker_timer_seconds, docs/operations.md).
        generation = app.consumer_generation_id
        if indexed[0] != generation and app.tables.recovery.completed.is_set() and not app.rebalancing:
            # once per assignment: what a worker that died had written ahead, and the expiry index
            with metrics.timing("resend_unsent"):
                await processor.resend_unsent()
            indexed[0] = generation
        with metrics.timing("release_pending"):
            await processor.release_pending()

    @app.timer(settings.expiry_check_seconds)
    async def expire_idle():
        with metrics.timing("expire_idle"):
            await processor.expire_idle()

    aggregator = _interval_statistics(app, settings, partitions, edges, metrics) if settings.intervals_enabled else None

    @app.task
    async def background():
        for service in edges.services:
            await service.start()

    @app.on_before_shutdown.connect
    async def stop_background(sender, **kwargs):
        for service in reversed(edges.services):
            await service.stop()

    @app.page("/healthz")
    async def healthz(web_view, request):
        stalled = edges.stalled()
        body = {"healthy": not stalled, "stalled_partitions": stalled}
        return web_view.json(body, status=503 if stalled else 200)

    @app.page("/metrics")
    async def metrics_page(web_view, request):
        return web_view.bytes(metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    @app.page("/readyz")
    async def readyz(web_view, request):
        ready = app.tables.recovery.completed.is_set() and not app.rebalancing
        return web_view.json({"ready": ready}, status=200 if ready else 503)

    return WorkerParts(app, processor, names, metrics, edges, aggregator)


def _interval_statistics(app: faust.App, settings: Settings, partitions: int, edges: WorkerEdges,
                         metrics: WorkerMetrics) -> IntervalAggregator:
    """Interval statistics (docs/intervals.md), kept from the contacts the agent writes: read back
    from the contacts topic, because it is partitioned by queue (the raw topic by chat), so
    each interval's state sits in its queue's partition, whichever worker emitted its contacts.
    streams/worker/interval_feed.py says why that reader is not a Faust agent."""
    tables = [app.Table(name, partitions=partitions, key_type=bytes, value_type=bytes)
              for name in ("intervals", "interval_positions")]
    tables[0].partition_key = queue_of_interval_key
    tables[1].partition_for_key = lambda key: int(key)  # b"<contacts partition>" -> the next offset to read
    for table in tables:
        table.tail_consumer = edges.tail_consumer

    async def emit(records: list[tuple[bytes, bytes]]) -> None:
        futures = [await app.producer.send(settings.intervals_topic, key, value,
                                           partition_of(queue_of_interval_key(key), partitions), None, None)
                   for key, value in records]
        await asyncio.gather(*futures)
        metrics.intervals_written.inc(len(records))

    aggregator = IntervalAggregator(
        intervals=tables[0], emit=emit, minutes=settings.interval_minutes,
        attribution=settings.interval_attribution, sla_seconds=settings.sla_seconds, clock=time.time,
        flush=lambda: _acked(tables[0]), retention_ms=int(settings.interval_retention_days * 86_400_000),
        on_skip=lambda reason: metrics.interval_skipped.labels(reason).inc())
    metrics.watch_intervals(aggregator)
    feed = IntervalFeed(app, contacts_topic=settings.contacts_topic, raw_topic=settings.raw_topic,
                        aggregator=aggregator, positions=tables[1], consumer=edges.tail_consumer,
                        max_records=settings.worker_batch_size)
    metrics.add(CallbackGauge("freshstream_worker_interval_lag_records",
                              "Contacts records the interval statistics have not applied yet, per partition.",
                              feed.lag))

    @app.task
    async def read_contacts():
        feed.start()

    @app.on_before_shutdown.connect
    async def stop_reading_contacts(sender, **kwargs):
        await feed.stop()

    @app.timer(3600.0)
    async def forget_old_intervals():
        with metrics.timing("forget_old_intervals"):  # not under the processor's lock; it holds the loop
            dropped = await aggregator.prune()
        if dropped:
            logger.info("forgot %d intervals older than %s days; their last records stay on %s", dropped,
                        settings.interval_retention_days, settings.intervals_topic)

    return aggregator


async def _acked(*tables: KeyPartitionedTable) -> None:
    """The processor's write-ahead point: every table write so far is acknowledged by Kafka."""
    for table in tables:
        await table.changelog_acked()


def _recovery_remaining(app: faust.App):
    recovery = app.tables.recovery
    done = recovery.completed.is_set()
    remaining = recovery.active_remaining()
    for tp in sorted(recovery.active_highwaters, key=lambda tp: (tp.topic, tp.partition)):
        yield {"topic": tp.topic, "partition": str(tp.partition)}, 0 if done else max(0, remaining.get(tp, 0))


async def _pause_while(path: str) -> None:
    """Testing aid (FRESHSTREAM_DEBUG_PAUSE_FILE): hold the agent, as a stuck consumer would."""
    while path and os.path.exists(path):
        await asyncio.sleep(0.2)


async def _publish_names(app: faust.App, settings: Settings, names: GroupNames) -> None:
    """Write names learnt from app events to the groups topic, for the other workers."""
    for key, value in names.take_outbox():
        await app.producer.send(settings.groups_topic, key, value, None, None, None)

