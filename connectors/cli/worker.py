"""`freshstream worker`: prepare topics, wire the worker's edges, then hand the process to Faust.

The worker's app (streams/worker/app.py) knows the stream; this verb gives it what lies
beyond: Kafka credentials, the group-name feed from Freshchat's API, the integration-health
view it exports and its own lag monitor.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from connectors.cli.arguments import port
from connectors.freshchat.feed import GroupFeed
from connectors.integrations.health import WorkerHealth, instance_name
from connectors.kafka.broker import bind_refusal
from connectors.kafka.clients import broker_errors, faust_credentials, make_consumer
from connectors.kafka.lag import LagMonitor
from connectors.kafka.topics import ensure_topics, partition_count, wait_for_broker
from streams.domain.group_names import GroupNames
from streams.errors import UsageError
from streams.metrics import CallbackGauge
from streams.errors import SettingsError
from streams.settings import Settings, data_dir_error

__all__ = ["add_parser", "run_worker", "assemble"]


def add_parser(sub) -> None:
    """Register the `worker` verb."""
    worker = sub.add_parser("worker", help="run the stream processor (raw events → contacts)",
                            description="Consume freshchat.events.raw, keep per-chat state, emit contacts.")
    worker.add_argument("--web-port", type=port,
                        help="port of the worker's /metrics page (default FRESHSTREAM_WORKER_WEB_PORT, 6066)")


def run_worker(settings: Settings, web_port: int | None) -> int:
    """Blocks until SIGINT/SIGTERM; Faust owns the event loop from here.

    What can be checked is checked before Faust starts, so that it fails as one line. Once
    Faust runs it logs a failure to start with a traceback and exits 1 without a word more;
    that record is held back (shown at DEBUG) and its exception raised here instead, for
    main() to say in one line like any other.
    """
    import faust
    from streams.worker.app import check_settings

    check_settings(settings)
    _check_data_dir(Path(settings.data_dir) / "faust")
    partitions = asyncio.run(_prepare(settings))
    parts = assemble(settings, partitions, web_port)
    _check_web_port(parts.app.conf.web_bind, parts.app.conf.web_port, web_port is not None)
    worker = faust.Worker(parts.app, loglevel=logging.getLevelName(logging.getLogger().level),
                          override_logging=False)
    failure = _StartFailure()
    logging.getLogger("faust.worker").addFilter(failure)
    try:
        worker.execute_from_commandline()
    except SystemExit as stopped:
        error = failure.error or worker.crash_reason
        if not stopped.code or error is None:
            raise
        with broker_errors(settings):
            raise error from None
    return 0


class _StartFailure(logging.Filter):
    """Keeps the exception of Faust's `Error: …` record, and the record itself for DEBUG only."""

    def __init__(self) -> None:
        super().__init__()
        self.error: BaseException | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or not record.exc_info or self.error is not None:
            return True
        self.error = record.exc_info[1]
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def _check_data_dir(path: Path) -> None:
    """Faust makes its data dir while starting, and a failure there ends it with a traceback."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise data_dir_error(path, exc) from None


def _check_web_port(host: str, port: int, from_flag: bool) -> None:
    """Faust binds its web server after it has joined the group, and a taken port ends it with a traceback."""
    reason = bind_refusal(host, port)
    if reason is not None:
        where = "--web-port" if from_flag else "FRESHSTREAM_WORKER_WEB_PORT (or --web-port)"
        raise UsageError(f"the worker's web server cannot listen on {host}:{port} ({reason}): "
                         f"stop what uses it or pick another port with {where}")


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
              "freshchat_api_failing, delivery_failing, disabled), 0 for the others.", health.status_samples),
        CallbackGauge("freshstream_delivery_backlog_contacts",
              "Contacts a delivery sink read but has not delivered to injixo yet, settling included, "
              "summed over the sink's instances.", health.delivery_samples("backlog")),
        CallbackGauge("freshstream_delivery_backlog_age_seconds",
              "Now minus the emission time of the oldest contact waiting for delivery to injixo (0 when none "
              "waits).", health.delivery_samples("backlog_age_seconds")),
        CallbackGauge("freshstream_delivery_last_delivered_timestamp_seconds",
              "When a contact of the integration was last delivered to injixo (Unix time).",
              health.delivery_samples("last_delivered_at")),
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
    with broker_errors(settings):
        await wait_for_broker(settings, timeout=settings.broker_wait_seconds)
        await ensure_topics(settings)
        partitions = await partition_count(settings, settings.raw_topic)
        if settings.intervals_enabled:
            contacts = await partition_count(settings, settings.contacts_topic)
            if contacts != partitions:
                raise SettingsError(
                    f"{settings.contacts_topic} has {contacts} partitions and {settings.raw_topic} {partitions}: "
                    "the interval statistics keep their state in the contacts' partitions, so the two must "
                    "match (recreate one, or set FRESHSTREAM_INTERVALS_ENABLED=off)")
        return partitions
