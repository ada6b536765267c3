"""A sink's own small HTTP server: /healthz, /readyz and /metrics, on 127.0.0.1.

A sink runs as a service of its own (a container, a systemd unit), so it needs what every
such service is watched by: a liveness probe, a readiness probe that says whether it holds
partitions and can deliver, and the Prometheus page of what it delivered and what failed.
"""

from __future__ import annotations

import logging
from typing import Callable

from aiohttp import web

from connectors.service import Service
from streams.errors import UsageError, os_reason
from streams.metrics import CONTENT_TYPE, MetricSet

__all__ = ["SinkWeb"]

logger = logging.getLogger(__name__)


class SinkWeb(Service):
    """Serves the probes and the metrics page; `ready()` returns (ready, reason)."""

    def __init__(self, name: str, port: int | None, metrics: MetricSet, ready: Callable[[], tuple[bool, str]],
                 host: str = "127.0.0.1") -> None:
        super().__init__()
        self.name, self.host, self.port, self.metrics, self._ready = name, host, port or 0, metrics, ready
        self._runner: web.AppRunner | None = None

    async def on_start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise UsageError(f"deliver {self.name} cannot listen on {self.host}:{self.port} ({os_reason(exc)}): "
                             "stop what uses it or pick another with --web-port") from None
        self.port = site._server.sockets[0].getsockname()[1]
        logger.info("deliver %s: /healthz, /readyz and /metrics on http://%s:%d", self.name, self.host, self.port)

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        ready, reason = self._ready()
        return web.json_response({"status": "ready" if ready else "not_ready", "reason": reason},
                                 status=200 if ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})
