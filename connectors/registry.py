"""Every process's live view of the integrations, following their compacted topic.

The topic is the one store shared by all ingress and worker instances, so an
add, rotation or disable reaches them all within a fetch wait, without restart.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from connectors.integrations import Integration
from connectors.kafka import make_consumer, make_producer
from streams.settings import Settings

__all__ = ["IntegrationRegistry", "IntegrationStore", "load_integrations"]

logger = logging.getLogger(__name__)


class IntegrationRegistry:
    """Integrations by id, kept current by a background consumer."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._by_id: dict[str, Integration] = {}
        self.loaded = asyncio.Event()
        self._task: asyncio.Task | None = None

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

    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name="integrations-follower")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _follow(self) -> None:
        while True:
            consumer = make_consumer(self._settings, fetch_max_wait_ms=200)
            try:
                await consumer.start()
                tp = TopicPartition(self._settings.integrations_topic, 0)
                consumer.assign([tp])
                await consumer.seek_to_beginning(tp)
                await self._consume(consumer, tp)
            except KafkaError as exc:
                logger.warning("integrations follower lost the broker (%s); retrying", exc)
                await asyncio.sleep(1)
            finally:
                await consumer.stop()

    async def _consume(self, consumer, tp: TopicPartition) -> None:
        while True:
            batches = await consumer.getmany(tp, timeout_ms=500)
            for record in batches.get(tp, ()):
                self.apply(record.key, record.value)
            end = consumer.highwater(tp)
            if end is not None and await consumer.position(tp) >= end and not self.loaded.is_set():
                logger.info("integrations loaded: %d", len(self._by_id))
                self.loaded.set()


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


async def load_integrations(settings: Settings, timeout: float = 15.0) -> IntegrationRegistry:
    """A registry read to the end of the topic once, for one-shot CLI commands."""
    registry = IntegrationRegistry(settings)
    await registry.start()
    try:
        await asyncio.wait_for(registry.loaded.wait(), timeout)
    finally:
        await registry.stop()
    return registry
