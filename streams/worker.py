"""The Faust worker: the one module that declares agents, tables and timers.

Thin shells around ContactProcessor: the agent reads batches of raw records and
hands them over; timers release contacts waiting for a group name and expire idle
chats. Everything it needs comes from one Settings object.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import faust

from connectors.group_feed import GroupFeed
from connectors.health_publisher import instance_name
from connectors.kafka import faust_credentials
from connectors.lag_monitor import LagMonitor
from connectors.metrics import Gauge
from connectors.worker_health import WorkerHealth
from streams.faust_transport import App
from streams.group_names import GroupNames
from streams.keys import chat_of_pending_key
from streams.processor import ContactProcessor
from streams.settings import Settings
from streams.tables import KeyPartitionedTable, partition_of
from streams.worker_metrics import WorkerMetrics

__all__ = ["build_app", "WorkerParts"]

logger = logging.getLogger(__name__)


class WorkerParts:
    """What build_app wires together, kept for the CLI and tests to reach."""

    def __init__(self, app: faust.App, processor: ContactProcessor, names: GroupNames,
                 feed: GroupFeed, metrics: WorkerMetrics) -> None:
        self.app, self.processor, self.names = app, processor, names
        self.feed, self.metrics = feed, metrics


def _faust_app(settings: Settings, partitions: int, web_port: int) -> faust.App:
    return App(
        settings.worker_app_id, fetch_max_wait_ms=settings.worker_fetch_max_wait_ms, broker=f"kafka://{settings.bootstrap}", store=settings.worker_store,
        broker_credentials=faust_credentials(settings),
        topic_partitions=partitions, key_serializer="raw", value_serializer="raw",
        processing_guarantee=settings.processing_guarantee, producer_acks=-1,
        broker_session_timeout=6, broker_heartbeat_interval=1, broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest", stream_wait_empty=False, table_standby_replicas=0,
        web_host=settings.worker_web_host, web_port=web_port, Table=KeyPartitionedTable,
        producer_max_request_size=settings.max_body_bytes + 65536,
        datadir=str(Path(settings.data_dir) / "faust"),
        # Faust compares a RocksDB's persisted offset with ListOffsets, which the embedded
        # broker answers short of the true end; tables.py reads to the real end instead.
        recovery_consistency_check=False)


def build_app(settings: Settings, partitions: int, web_port: int | None = None) -> WorkerParts:
    """Declare the worker's topics, tables, agent, timers and pages."""
    web_port = settings.worker_web_port if web_port is None else web_port
    app = _faust_app(settings, partitions, web_port)
    raw = app.topic(settings.raw_topic, key_serializer="raw", value_serializer="raw")
    chats = app.Table("chats", partitions=partitions, key_type=bytes, value_type=bytes)
    pending = app.Table("pending", partitions=partitions, key_type=bytes, value_type=bytes)
    pending.partition_key = chat_of_pending_key
    # b"<incarnation>@<partition>" -> the last batch that incarnation sent, kept in that partition
    confirmed = app.Table("confirmed", partitions=partitions, key_type=bytes, value_type=bytes)
    confirmed.partition_for_key = lambda key: int(key.rsplit(b"@", 1)[1])
    for table in (chats, pending, confirmed):
        table.kafka_settings = settings
    health = WorkerHealth(settings, instance_name(settings, "worker", web_port),
                          lambda: feed.registry.all() if feed.registry else [])
    feed = GroupFeed(settings, names := GroupNames(lambda integration: feed.request_refresh(integration)),
                     on_status=health.api.report)
    metrics = WorkerMetrics()
    metrics.add(Gauge("freshstream_integration_status",
                      "1 for each integration's current status (operational, silent, rejecting, "
                      "freshchat_api_failing, disabled), 0 for the others.", health.status_samples))
    metrics.add(Gauge("freshstream_freshchat_api_up",
                      "1 when the last poll of an integration's Freshchat REST API succeeded.",
                      lambda: _api_up(feed)))

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

    lag = LagMonitor(settings, settings.worker_app_id, settings.raw_topic)
    metrics.add(Gauge("freshstream_worker_lag_records", "Unprocessed raw records per partition.",
                      lag.gauge("lag")))
    metrics.add(Gauge("freshstream_worker_lag_seconds",
                      "Now minus the time of the oldest unprocessed raw record, per partition.",
                      lag.gauge("lag_seconds")))

    metrics.add(Gauge("freshstream_worker_recovery_remaining",
                      "Changelog records still to read before the tables are recovered, per changelog partition.",
                      lambda: _recovery_remaining(app)))
    metrics.add(Gauge("freshstream_worker_tables_recovered",
                      "1 once table recovery is complete (the worker is then ready), else 0.",
                      lambda: [({}, 1 if app.tables.recovery.completed.is_set() else 0)]))

    @app.agent(raw)
    async def contacts(stream):
        async for events in stream.take_events(settings.worker_batch_size, within=0.05):
            await _pause_while(settings.debug_pause_file)
            await processor.process([(e.key, e.value, e.message.partition) for e in events])
            await _publish_names(app, settings, names)
            if chats.changelog_backlog() > 2 * settings.worker_batch_size:
                await chats.changelog_acked()  # bounded: the agent never runs far ahead of its changelog

    resent = asyncio.Event()

    @app.timer(1.0)
    async def release_pending():
        if not resent.is_set() and app.tables.recovery.completed.is_set() and not app.rebalancing:
            await processor.resend_unsent()  # once: what a worker that died had written ahead
            resent.set()
        await processor.release_pending()

    @app.timer(settings.expiry_check_seconds)
    async def expire_idle():
        await processor.expire_idle()

    @app.task
    async def background():
        await health.start()
        await feed.start()
        await lag.start()

    @app.on_before_shutdown.connect
    async def stop_background(sender, **kwargs):
        await lag.stop()
        await feed.stop()
        await health.stop()

    @app.page("/healthz")
    async def healthz(web_view, request):
        stalled = lag.stalled()
        body = {"healthy": not stalled, "stalled_partitions": stalled}
        return web_view.json(body, status=503 if stalled else 200)

    @app.page("/metrics")
    async def metrics_page(web_view, request):
        return web_view.text(metrics.render(), content_type="text/plain")

    @app.page("/readyz")
    async def readyz(web_view, request):
        ready = app.tables.recovery.completed.is_set() and not app.rebalancing
        return web_view.json({"ready": ready}, status=200 if ready else 503)

    return WorkerParts(app, processor, names, feed, metrics)


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


def _api_up(feed: GroupFeed):
    for integration, status in sorted((feed.poller.status if feed.poller else {}).items()):
        yield {"integration": integration}, 1 if status.get("ok") else 0


async def _pause_while(path: str) -> None:
    """Testing aid (FRESHSTREAM_DEBUG_PAUSE_FILE): hold the agent, as a stuck consumer would."""
    while path and os.path.exists(path):
        await asyncio.sleep(0.2)


async def _publish_names(app: faust.App, settings: Settings, names: GroupNames) -> None:
    """Write names learnt from app events to the groups topic, for the other workers."""
    for key, value in names.take_outbox():
        await app.producer.send(settings.groups_topic, key, value, None, None, None)

