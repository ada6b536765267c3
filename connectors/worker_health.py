"""The worker's part in integration health: publish what its poller sees, export everyone's status.

The worker is the process Prometheus scrapes for the pipeline, so it also follows the
health topic and exports each integration's merged status, with the ingress's view
included: one place to alert on "rejecting" or "silent".
"""

from __future__ import annotations

import logging
from typing import Callable

from connectors.follower import TopicFollower
from connectors.health_publisher import HealthPublisher
from connectors.integration_health import STATUSES, ApiHealth, HealthView, assess
from connectors.integrations import Integration
from connectors.kafka import make_producer
from streams.settings import Settings

__all__ = ["WorkerHealth"]

logger = logging.getLogger(__name__)


class WorkerHealth:
    """Publishes the group poller's view of Freshchat's API and folds the health topic in."""

    def __init__(self, settings: Settings, instance: str, integrations: Callable[[], list[Integration]]) -> None:
        self.settings, self._integrations = settings, integrations
        self.api = ApiHealth(instance)
        self.view = HealthView()
        self._producer = self._publisher = self._follower = None

    async def start(self) -> None:
        self._producer = make_producer(self.settings)
        await self._producer.start()
        self._publisher = HealthPublisher(self.settings, self._producer, [self.api.take_records])
        self._follower = TopicFollower(self.settings, self.settings.health_topic, self.view.apply)
        await self._follower.start()
        self._publisher.start()

    async def stop(self) -> None:
        if self._publisher is not None:
            await self._publisher.stop()
            await self._follower.stop()
            await self._producer.stop()

    def status_samples(self):
        """`freshstream_integration_status`: 1 for each integration's current status, 0 for the others."""
        for integration in self._integrations():
            current = assess(integration, self.view.records(integration.id), self.settings)["status"]
            for status in STATUSES:
                yield {"integration": integration.id, "status": status}, 1 if status == current else 0
