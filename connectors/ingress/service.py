"""Runs the ingress: topics, producer, integration registry and the HTTP server together."""

from __future__ import annotations

import asyncio
import gc
import logging

from aiohttp import web

from connectors.ingress.connection_guard import ConnectionGuard
from connectors.ingress.handlers import create_app
from connectors.ingress.metrics import IngressMetrics
from connectors.integrations.health import HealthPublisher, instance_name
from connectors.integrations.registry import IntegrationRegistry
from connectors.kafka.clients import make_producer
from connectors.kafka.topics import ensure_topics
from connectors.service import Service
from streams.domain.integration_health import IngressActivity
from streams.errors import UsageError, os_reason
from streams.settings import Settings

__all__ = ["IngressService"]

logger = logging.getLogger(__name__)


class IngressService(Service):
    """One ingress process's moving parts, started and stopped in order."""

    def __init__(self, settings: Settings, host: str | None = None, port: int | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.host = host or settings.ingress_host
        self.port = settings.ingress_port if port is None else port
        self.registry = self.add_dependency(IntegrationRegistry(settings))
        self.guard = self.add_dependency(
            ConnectionGuard(settings.ingress_max_connections, settings.ingress_idle_timeout_seconds))
        self.producer = None  # aiokafka clients must be made inside the running loop
        self.health: HealthPublisher | None = None
        self._server: asyncio.AbstractServer | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        try:
            await super().start()
        except BaseException:
            await self.stop()  # callers stop only what started: a half-started ingress must not leak its clients
            raise

    async def on_start(self) -> None:
        await ensure_topics(self.settings)
        self.producer = await self.add_async_context(make_producer(self.settings))
        await self.registry.maybe_start()  # before its dependents would: serving waits for the keys
        try:  # serve once keys are known, so a restart does not answer 401 to valid keys
            await asyncio.wait_for(self.registry.loaded.wait(), self.settings.produce_timeout)
        except asyncio.TimeoutError:
            logger.warning("integrations not loaded yet; serving anyway, /readyz says 503 until they are")
        activity = IngressActivity(instance_name(self.settings, "ingress", self.port))
        self.health = self.add_dependency(HealthPublisher(self.settings, self.producer, [activity.take_records]))
        app = create_app(self.settings, self.registry, self.producer, IngressMetrics(activity, self.guard),
                         activity, self.guard)
        self._runner = web.AppRunner(app, access_log=logging.getLogger("freshstream.access"))
        await self._runner.setup()
        server = self._runner.server  # aiohttp's protocol factory, each connection wrapped by the guard
        try:
            self._server = await asyncio.get_running_loop().create_server(
                lambda: self.guard.protocol(server()), self.host, self.port, backlog=1024, reuse_address=True)
        except OSError as exc:
            raise UsageError(f"the ingress cannot listen on {self.host}:{self.port} ({os_reason(exc)}): stop what uses "
                             "it or pick another with --port / --host or FRESHSTREAM_INGRESS_PORT / "
                             "FRESHSTREAM_INGRESS_HOST") from None
        self.port = self._server.sockets[0].getsockname()[1]

    async def on_started(self) -> None:
        gc.freeze()  # what start-up made lives as long as the process: the collector stops rescanning it
        logger.info("ingress listening on http://%s:%d", self.host, self.port)

    async def on_stop(self) -> None:
        """Requests end before the parts they use stop: health then flushes what they counted."""
        if self._server:
            self._server.close()  # no new connections; the runner then ends the open ones
        if self._runner:
            await self._runner.cleanup()

    async def on_shutdown(self) -> None:
        if self.health is not None:  # it holds this run's producer: a restart makes both anew
            await self.remove_dependency(self.health)
            self.health = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
