"""Writes a process's integration-health records to the compacted health topic, and reads them back.

Publishing is periodic, not per request: the ingress's hot path only updates a few
fields in memory (IngressActivity), and one record per changed integration leaves
every `FRESHSTREAM_HEALTH_PUBLISH_SECONDS`. A record that could not be written is
kept and sent with the next flush, so a broker hiccup delays health, never loses it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Callable

from aiokafka.errors import KafkaError

from connectors.follower import read_once
from connectors.integration_health import HealthView
from streams.settings import Settings

__all__ = ["HealthPublisher", "instance_name", "load_health"]

logger = logging.getLogger(__name__)

Source = Callable[[], list[tuple[bytes, bytes]]]


def instance_name(settings: Settings, role: str, port: int) -> str:
    """Stable across restarts on one host, distinct between processes on it: the health
    topic is compacted by key, so a restarted instance replaces its own records."""
    return settings.instance_id or f"{socket.gethostname()}:{role}:{port}"


class HealthPublisher:
    """Flushes the records of its sources to the health topic every publish interval."""

    def __init__(self, settings: Settings, producer, sources: list[Source]) -> None:
        self.settings, self._producer, self._sources = settings, producer, sources
        self._unsent: dict[bytes, bytes] = {}
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="health-publisher")

    async def stop(self) -> None:
        """Stop the loop and write what is left, briefly: shutdown must not hang on a dead broker."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await asyncio.wait_for(self.flush(), self.settings.produce_timeout)
        except asyncio.TimeoutError:
            logger.warning("integration health not written at shutdown: the broker did not answer")

    async def flush(self) -> int:
        """Send every pending record; returns how many were written."""
        for source in self._sources:
            self._unsent.update(source())
        if not self._unsent:
            return 0
        batch, self._unsent = self._unsent, {}
        try:
            futures = [await self._producer.send(self.settings.health_topic, value, key=key)
                       for key, value in batch.items()]
            await asyncio.gather(*futures)
        except (KafkaError, OSError) as exc:
            self._unsent = {**batch, **self._unsent}
            logger.warning("integration health not written (%s); retrying at the next flush", type(exc).__name__)
            return 0
        return len(batch)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_publish_seconds)
            await self.flush()


async def load_health(settings: Settings, timeout: float = 15.0) -> HealthView:
    """The health topic read to its end once, for one-shot commands."""
    view = HealthView()
    await read_once(settings, settings.health_topic, view.apply, timeout)
    return view
