"""Integration health on the compacted health topic: each process publishes its view, the worker merges them.

Publishing is periodic, not per request: the ingress's hot path only updates a few
fields in memory (IngressActivity), and one record per changed integration leaves
every `FRESHSTREAM_HEALTH_PUBLISH_SECONDS`. A record that could not be written is
kept and sent with the next flush, so a broker hiccup delays health, never loses it.

The worker is the process Prometheus scrapes for the pipeline, so WorkerHealth also
follows the health topic and exports each integration's merged status, with the
ingress's and the delivery sinks' views included: one place to alert on "rejecting",
"silent" or "delivery_failing", and on a delivery backlog that grows.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Callable

from aiokafka.errors import KafkaError

from connectors.integrations.records import Integration
from connectors.kafka.clients import make_producer
from connectors.kafka.follower import TopicFollower, read_once
from connectors.service import Service
from streams.domain.integration_health import STATUSES, ApiHealth, HealthView, assess
from streams.domain.times import parse_time
from streams.settings import Settings

__all__ = ["HealthPublisher", "instance_name", "load_health", "forget_health", "WorkerHealth"]

logger = logging.getLogger(__name__)


Source = Callable[[], list[tuple[bytes, bytes]]]


def instance_name(settings: Settings, role: str, port: int) -> str:
    """Stable across restarts on one host, distinct between processes on it: the health
    topic is compacted by key, so a restarted instance replaces its own records."""
    return settings.instance_id or f"{socket.gethostname()}:{role}:{port}"


class HealthPublisher(Service):
    """Flushes the records of its sources to the health topic every publish interval."""

    def __init__(self, settings: Settings, producer, sources: list[Source]) -> None:
        super().__init__()
        self.settings, self._producer, self._sources = settings, producer, sources
        self._unsent: dict[bytes, bytes] = {}

    async def on_shutdown(self) -> None:
        """Write what is left once the loop has ended, briefly: shutdown must not hang on a dead broker."""
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

    @Service.task
    async def _publish(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_publish_seconds)
            await self.flush()


async def load_health(settings: Settings, timeout: float = 15.0) -> HealthView:
    """The health topic read to its end once, for one-shot commands."""
    view = HealthView()
    await read_once(settings, settings.health_topic, view.apply, timeout)
    return view


async def forget_health(settings: Settings, integration_id: str) -> int:
    """Tombstone every health record of a removed integration, so that a later integration of
    the same name does not start out with the old one's last accept, rejects and API errors.
    Returns how many records were tombstoned."""
    keys = (await load_health(settings)).keys(integration_id)
    if not keys:
        return 0
    producer = make_producer(settings)
    await producer.start()
    try:
        futures = [await producer.send(settings.health_topic, None, key=key) for key in keys]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(keys)


class WorkerHealth(Service):
    """Publishes the group poller's view of Freshchat's API and folds the health topic in."""

    def __init__(self, settings: Settings, instance: str, integrations: Callable[[], list[Integration]]) -> None:
        super().__init__()
        self.settings, self._integrations = settings, integrations
        self.api = ApiHealth(instance)
        self.view = HealthView()
        self.add_dependency(TopicFollower(settings, settings.health_topic, self.view.apply))
        self._publisher: HealthPublisher | None = None

    async def on_start(self) -> None:
        """The producer is made here, in the running loop, and closed after the publisher's last flush."""
        producer = await self.add_async_context(make_producer(self.settings))
        self._publisher = self.add_dependency(HealthPublisher(self.settings, producer, [self.api.take_records]))

    async def on_shutdown(self) -> None:
        if self._publisher is not None:  # it holds this run's producer: a restart makes both anew
            await self.remove_dependency(self._publisher)
            self._publisher = None

    def delivery_samples(self, field: str):
        """Samples of one figure of the merged delivery view, for the integrations that deliver
        to injixo; none before a sink has reported (an unknown backlog is not an empty one)."""
        def samples():
            for integration in self._integrations():
                if not integration.delivers_to_injixo:
                    continue
                view = assess(integration, self.view.records(integration.id), self.settings)["delivery"]
                if view["state"] in ("unknown", "not_running"):  # no sink speaks: the figures are unknown
                    continue
                if field == "last_delivered_at":
                    at = parse_time(view["last_delivered_at"])
                    value = None if at is None else at / 1000
                else:  # no backlog is an age of 0, so that an alert on the age clears
                    value = view[field] or 0
                if value is not None:
                    yield {"integration": integration.id}, value
        return samples

    def status_samples(self):
        """`freshstream_integration_status`: 1 for each integration's current status, 0 for the others."""
        for integration in self._integrations():
            current = assess(integration, self.view.records(integration.id), self.settings)["status"]
            for status in STATUSES:
                yield {"integration": integration.id, "status": status}, 1 if status == current else 0
