"""Bounds on the ingress's connections: how many, and how long one may sit idle.

aiohttp closes a keep-alive connection only after a response, so a client that
connects and sends nothing, or trickles a request line byte by byte, holds a socket
and a file descriptor forever; enough of them and the ingress runs out of both. The
guard wraps each connection's protocol (plain asyncio, no aiohttp internals):
beyond `max_connections` a new connection is closed at once, and a connection with
no request in progress for `idle_timeout` seconds (since it opened or since its last
response) is closed by a sweep, whatever bytes it trickles meanwhile. A request in
progress is bounded by the body timeout in the handler instead.
"""

from __future__ import annotations

import asyncio
import logging
import time

from connectors.service import Service

__all__ = ["ConnectionGuard"]

logger = logging.getLogger(__name__)


class _Connection:
    __slots__ = ("since", "busy")

    def __init__(self, since: float) -> None:
        self.since, self.busy = since, 0


class ConnectionGuard(Service):
    """Counts live connections, refuses those over the limit, closes idle ones."""

    def __init__(self, max_connections: int, idle_timeout: float, clock=time.monotonic) -> None:
        super().__init__()
        self.max_connections, self.idle_timeout, self._clock = max_connections, idle_timeout, clock
        self.live: dict[asyncio.BaseTransport, _Connection] = {}
        self.refused = 0
        self.closed_idle = 0
        self._warned_at = -1e9

    def protocol(self, inner: asyncio.Protocol) -> asyncio.Protocol:
        return _Guarded(self, inner)

    def begin(self, transport) -> None:
        """A request started on this connection: it is not idle until the request ends."""
        connection = self.live.get(transport)
        if connection is not None:
            connection.busy += 1

    def end(self, transport) -> None:
        connection = self.live.get(transport)
        if connection is not None:
            connection.busy -= 1
            connection.since = self._clock()

    def sweep(self) -> int:
        """Close every connection idle for longer than the timeout; returns how many."""
        deadline = self._clock() - self.idle_timeout
        idle = [t for t, c in self.live.items() if not c.busy and c.since < deadline]
        for transport in idle:
            transport.close()
            self.live.pop(transport, None)
        self.closed_idle += len(idle)
        return len(idle)

    @Service.task
    async def _sweeping(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.idle_timeout / 2))
            self.sweep()

    def _admit(self, transport) -> bool:
        if len(self.live) >= self.max_connections:
            self.refused += 1
            now = self._clock()
            if now - self._warned_at > 60:
                self._warned_at = now
                logger.warning("connection refused: %d connections are open (FRESHSTREAM_INGRESS_MAX_CONNECTIONS)",
                               len(self.live))
            return False
        self.live[transport] = _Connection(self._clock())
        return True


class _Guarded(asyncio.Protocol):
    """Forwards every protocol call to the aiohttp handler, telling the guard of opens and closes."""

    __slots__ = ("_guard", "_inner", "_transport")

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard, self._inner, self._transport = guard, inner, None

    def connection_made(self, transport) -> None:
        if not self._guard._admit(transport):
            self._inner = None
            transport.abort()
            return
        self._transport = transport
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self):
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc) -> None:
        if self._transport is not None:
            self._guard.live.pop(self._transport, None)
        if self._inner is not None:
            self._inner.connection_lost(exc)
