"""`freshstream worker`: prepare topics, then hand the process to a Faust worker."""

from __future__ import annotations

import asyncio
import logging

from connectors.kafka import ensure_topics, partition_count, wait_for_broker
from streams.settings import Settings

__all__ = ["add_parser", "run_worker"]


def add_parser(sub) -> None:
    """Register the `worker` verb."""
    worker = sub.add_parser("worker", help="run the stream processor (raw events → contacts)",
                            description="Consume freshchat.events.raw, keep per-chat state, emit contacts.")
    worker.add_argument("--web-port", type=int,
                        help="port of the worker's /metrics page (default FRESHSTREAM_WORKER_WEB_PORT, 6066)")


def run_worker(settings: Settings, web_port: int | None) -> int:
    """Blocks until SIGINT/SIGTERM; Faust owns the event loop from here."""
    partitions = asyncio.run(_prepare(settings))
    import faust
    from streams.worker import build_app
    parts = build_app(settings, partitions, web_port)
    worker = faust.Worker(parts.app, loglevel=logging.getLevelName(logging.getLogger().level),
                          override_logging=False)
    worker.execute_from_commandline()
    return 0


async def _prepare(settings: Settings) -> int:
    await wait_for_broker(settings, timeout=30)
    await ensure_topics(settings)
    return await partition_count(settings, settings.raw_topic)
