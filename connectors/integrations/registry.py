"""Every process's live view of the integrations, following their compacted topic.

The topic is the one store shared by all ingress and worker instances, so an
add, rotation or disable reaches them all within a fetch wait, without restart.
"""

from __future__ import annotations

import logging

from connectors.integrations.records import Integration
from connectors.kafka.clients import make_producer
from connectors.kafka.follower import TopicFollower, read_once
from connectors.service import Service
from streams.settings import Settings

__all__ = ["IntegrationRegistry", "IntegrationStore", "load_integrations"]

logger = logging.getLogger(__name__)


class IntegrationRegistry(Service):
    """Integrations by id, kept current by a background follower of their topic."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self._by_id: dict[str, Integration] = {}
        self.loaded = self.add_dependency(TopicFollower(settings, settings.integrations_topic, self.apply)).loaded

    def get(self, integration_id: str) -> Integration | None:
        return self._by_id.get(integration_id)

    def all(self) -> list[Integration]:
        return sorted(self._by_id.values(), key=lambda i: i.id)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one topic record; a tombstone removes the integration."""
        if key is None:
            return
        if value is None:
            self._by_id.pop(key.decode(), None)
            return
        try:
            integration = Integration.from_json(value)
        except (ValueError, TypeError):
            logger.warning("skipped an unreadable integration record for %r", key)
            return
        self._by_id[integration.id] = integration


class IntegrationStore:
    """Writes integration records; readers see them through an IntegrationRegistry."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer = None

    async def __aenter__(self) -> "IntegrationStore":
        self._producer = make_producer(self._settings)
        await self._producer.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self._producer.stop()

    async def put(self, integration: Integration) -> None:
        await self._producer.send_and_wait(self._settings.integrations_topic,
                                           integration.to_json(), key=integration.id.encode())

    async def remove(self, integration_id: str) -> None:
        """A tombstone: every registry drops the integration, and compaction later drops its key hash."""
        await self._producer.send_and_wait(self._settings.integrations_topic, None, key=integration_id.encode())


async def load_integrations(settings: Settings, timeout: float = 15.0) -> IntegrationRegistry:
    """A registry read to the end of the topic once, for one-shot CLI commands."""
    registry = IntegrationRegistry(settings)
    await read_once(settings, settings.integrations_topic, registry.apply, timeout)
    return registry
