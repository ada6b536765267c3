"""`freshstream worker`: prepare topics, wire the worker's edges, then hand the process to Faust.

The worker's app (streams/worker/app.py) knows the stream; this verb gives it what lies
beyond: Kafka credentials, the group-name feed from Freshchat's API, the integration-health
view it exports and its own lag monitor.
"""

from __future__ import annotations

import asyncio
import logging

from connectors.freshchat.feed import GroupFeed
from connectors.integrations.health import WorkerHealth, instance_name
from connectors.kafka.clients import faust_credentials, make_consumer
from connectors.kafka.lag import LagMonitor
from connectors.kafka.topics import ensure_topics, partition_count, wait_for_broker
from streams.domain.group_names import GroupNames
from streams.metrics import CallbackGauge
from streams.settings import Settings

__all__ = ["add_parser", "run_worker", "assemble"]


def add_parser(sub) -> None:
    """Register the `worker` verb."""
    worker = sub.add_parser("worker", help="run the stream processor (raw events → contacts)",
                            description="Consume freshchat.events.raw, keep per-chat state, emit contacts.")
    worker.add_argument("--web-port", type=int,
                        help="port of the worker's /metrics page (default FRESHSTREAM_WORKER_WEB_PORT, 6066)")


def run_worker(settings: Settings, web_port: int | None) -> int:
    """Blocks until SIGINT/SIGTERM; Faust owns the event loop from here."""
    import faust

    partitions = asyncio.run(_prepare(settings))
    parts = assemble(settings, partitions, web_port)
    worker = faust.Worker(parts.app, loglevel=logging.getLevelName(logging.getLogger().level),
                          override_logging=False)
    worker.execute_from_commandline()
    return 0


def assemble(settings: Settings, partitions: int, web_port: int | None = None):
    """The worker's app with its edges (a WorkerParts): what `freshstream worker` runs."""
    from streams.worker.app import WorkerEdges, build_app  # imports Faust: only the worker verb pays for it

    web_port = settings.worker_web_port if web_port is None else web_port
    health = WorkerHealth(settings, instance_name(settings, "worker", web_port),
                          lambda: feed.registry.all())
    names = GroupNames(lambda integration: feed.request_refresh(integration))
    feed = GroupFeed(settings, names, on_status=health.api.report)
    lag = LagMonitor(settings, settings.worker_app_id, settings.raw_topic)
    gauges = [
        CallbackGauge("freshstream_integration_status",
              "1 for each integration's current status (operational, silent, rejecting, "
              "freshchat_api_failing, disabled), 0 for the others.", health.status_samples),
        CallbackGauge("freshstream_freshchat_api_up",
              "1 when the last poll of an integration's Freshchat REST API succeeded.", lambda: _api_up(feed)),
        CallbackGauge("freshstream_worker_lag_records", "Unprocessed raw records per partition.", lag.gauge("lag")),
        CallbackGauge("freshstream_worker_lag_seconds",
              "Now minus the time of the oldest unprocessed raw record, per partition.", lag.gauge("lag_seconds")),
    ]
    edges = WorkerEdges(names=names, tail_consumer=lambda: make_consumer(settings, fetch_max_wait_ms=100),
                        broker_credentials=faust_credentials(settings), services=(health, feed, lag),
                        gauges=gauges, stalled=lag.stalled)
    return build_app(settings, partitions, web_port, edges)


def _api_up(feed: GroupFeed):
    for integration, status in sorted((feed.poller.status if feed.poller else {}).items()):
        yield {"integration": integration}, 1 if status.get("ok") else 0


async def _prepare(settings: Settings) -> int:
    await wait_for_broker(settings, timeout=30)
    await ensure_topics(settings)
    return await partition_count(settings, settings.raw_topic)
