"""Everything that keeps a worker's group names current, started and stopped as one.

Follows the groups topic into GroupNames (and the poller, so it does not rewrite
names it already sees), follows the integrations topic for API keys, and runs the
Freshchat REST poller that lists each integration's groups into the groups topic.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

from connectors.freshchat.poller import GroupPoller
from connectors.integrations.records import load_cipher
from connectors.integrations.registry import IntegrationRegistry
from connectors.kafka.clients import make_producer
from connectors.kafka.follower import TopicFollower
from connectors.service import Service
from streams.domain.group_names import GroupNames
from streams.settings import Settings

__all__ = ["GroupFeed", "publish_group_names"]

logger = logging.getLogger(__name__)


class GroupFeed(Service):
    """The worker's sources of group names: the groups topic and Freshchat's /v2/groups."""

    def __init__(self, settings: Settings, names: GroupNames, on_status=None) -> None:
        super().__init__()
        self.settings, self.names, self._on_status = settings, names, on_status
        self.registry = self.add_dependency(IntegrationRegistry(settings))
        self.add_dependency(TopicFollower(settings, settings.groups_topic, self._apply))
        self.poller: GroupPoller | None = None
        self._producer = None

    def request_refresh(self, integration: str) -> None:
        """An unknown group id was seen: ask the poller to list that integration's groups soon."""
        poller = self.poller  # read once: another thread may be stopping the feed
        if poller is not None:
            poller.request_refresh(integration)

    async def on_start(self) -> None:
        """Clients are made here, in the running loop, and closed after the parts that use them stop."""
        self._producer = await self.add_async_context(make_producer(self.settings))
        http = await self.add_async_context(httpx.AsyncClient(timeout=10.0))
        self.poller = self.add_dependency(GroupPoller(self.settings, self.registry, self._send, http,
                                                      load_cipher(self.settings), on_status=self._on_status))

    async def on_shutdown(self) -> None:
        if self.poller is not None:  # it holds this run's HTTP client: a restart makes both anew
            await self.remove_dependency(self.poller)
            self.poller = None

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        self.names.apply(key, value)
        self.poller.apply(key, value)

    async def _send(self, key: bytes, value: bytes) -> None:
        await self._producer.send_and_wait(self.settings.groups_topic, value, key=key)


async def publish_group_names(settings: Settings, integration: str, groups: list[dict]) -> None:
    """Write known group names to the groups topic, as the poller would after listing /v2/groups."""
    names = GroupNames()
    for group in groups:
        names.learn(integration, group["id"], group["name"])
    producer = make_producer(settings)
    await producer.start()
    try:
        futures = [await producer.send(settings.groups_topic, value, key=key) for key, value in names.take_outbox()]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
