"""The group-name poller: Freshchat `/v2/groups` of every integration → the compacted groups topic.

Contacts are named after their chat's group (docs/contacts.md); webhooks carry only
group ids, so names come from here (and from app events). A record is written only
when a name changes, so the compacted topic does not grow at every poll.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import datetime, timezone
from typing import Awaitable, Callable, Protocol

import httpx
import orjson
from cryptography.fernet import Fernet

from connectors.freshchat.client import FreshchatAuthError, FreshchatClient, FreshchatError
from connectors.integrations.records import Integration, decrypt_api_key
from connectors.service import Service
from streams.domain.group_names import group_record
from streams.domain.keys import group_key
from streams.domain.times import format_time
from streams.errors import IntegrationError
from streams.settings import Settings

__all__ = ["GroupPoller", "RefreshSchedule", "group_record"]

logger = logging.getLogger(__name__)

Send = Callable[[bytes, bytes], Awaitable[object]]
NEW_INTEGRATION_CHECK = 1.0  # seconds between looks for integrations that were never polled


class Integrations(Protocol):
    """What the poller needs of an IntegrationRegistry."""

    def all(self) -> list[Integration]: ...


class RefreshSchedule:
    """When refresh requests fall due: coalesced, and at most one poll per integration per `min_interval`."""

    def __init__(self, min_interval: float) -> None:
        self.min_interval = min_interval
        self._requested: dict[str, float] = {}  # integration → time of its latest unserved request
        self._started: dict[str, float] = {}  # integration → start of its latest poll

    def request(self, integration_id: str, now: float) -> None:
        """One pending entry per integration; a request made during a poll outlives that poll."""
        self._requested[integration_id] = now

    def started(self, integration_id: str, now: float) -> None:
        self._started[integration_id] = now

    def served(self, integration_id: str, started: float) -> None:
        """A poll that started at `started` answers every request made before it."""
        if self._requested.get(integration_id, math.inf) <= started:
            del self._requested[integration_id]

    def due_at(self, integration_id: str) -> float:
        last = self._started.get(integration_id, -math.inf)
        return max(self._requested[integration_id], last + self.min_interval)

    def due(self, now: float, busy=frozenset()) -> list[str]:
        return sorted(i for i in self._requested if i not in busy and self.due_at(i) <= now)

    def next_due(self, busy=frozenset()) -> float:
        return min((self.due_at(i) for i in self._requested if i not in busy), default=math.inf)


class GroupPoller(Service):
    """Keeps every enabled integration's group names on the groups topic, polling Freshchat."""

    def __init__(self, settings: Settings, registry: Integrations, send: Send, http: httpx.AsyncClient,
                 cipher: Fernet, *, interval: float | None = None, min_refresh_interval: float = 10.0,
                 sleep: Callable[[float], Awaitable] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 on_status: Callable[[str, dict], None] | None = None) -> None:
        super().__init__()
        self.settings, self._registry, self._send = settings, registry, send
        self._http, self._cipher, self._sleep, self._clock = http, cipher, sleep, clock
        self.interval = settings.group_poll_seconds if interval is None else interval
        self.schedule = RefreshSchedule(min_refresh_interval)
        self.status: dict[str, dict] = {}
        self._on_status = on_status  # told every poll's outcome (the worker publishes it as integration health)
        self._written: dict[bytes, str] = {}  # groups-topic key → last name on the topic
        self._inflight: dict[str, asyncio.Future] = {}
        self._wake = asyncio.Event()
        self._home: asyncio.AbstractEventLoop | None = None  # the loop refresh requests are handed to

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Learn a groups-topic record (e.g. from a TopicFollower), so known names are not rewritten."""
        if not key:
            return
        name = _name_of(value)
        if name is None:
            self._written.pop(key, None)
        else:
            self._written[key] = name

    async def poll_once(self, integration_id: str | None = None) -> int:
        """Poll one integration (or all); returns how many records were written. Errors go to `status`."""
        targets = self._all_targets() if integration_id is None else self._targets(integration_id)
        if integration_id is not None and not targets:
            self.schedule.served(integration_id, self._clock())
        return sum(await asyncio.gather(*(self._poll(i) for i in targets)))

    def request_refresh(self, integration_id: str) -> None:
        """Ask for a poll of one integration soon (e.g. an unknown group id); never blocks, any thread."""
        loop = self._home
        if loop is None or _running_loop() is loop:
            self._request(integration_id)
            return
        try:
            loop.call_soon_threadsafe(self._request, integration_id)
        except RuntimeError:  # the loop has closed: nothing left to refresh
            logger.debug("group refresh for %s ignored: the poller has stopped", integration_id)

    async def run(self) -> None:
        """Poll all integrations every `interval`, and due refreshes in between, until cancelled.

        An integration never polled yet (added since, or not loaded when the poller
        started) is polled within NEW_INTEGRATION_CHECK seconds, not at the next full round.
        """
        self._home = asyncio.get_running_loop()
        next_full = self._clock()
        try:
            while True:
                self._wake.clear()
                if self._clock() >= next_full:
                    self._launch(self._all_targets())
                    next_full = self._clock() + self.interval
                else:
                    self._launch([i for i in self._all_targets() if i.id not in self.status])
                self._launch_due_refreshes()
                await self._wait(min(next_full, self.schedule.next_due(busy=self._inflight.keys()),
                                     self._clock() + NEW_INTEGRATION_CHECK))
        finally:
            for task in list(self._inflight.values()):
                task.cancel()

    async def on_start(self) -> None:
        """Refreshes asked for from another thread right after start reach this loop."""
        self._home = asyncio.get_running_loop()
        self.add_future(self.run())

    def _request(self, integration_id: str) -> None:
        self.schedule.request(integration_id, self._clock())
        self._wake.set()

    def _targets(self, integration_id: str | None) -> list[Integration]:
        """Enabled integrations that have a Freshchat API key (others have nothing to poll)."""
        return [i for i in self._registry.all()
                if not i.disabled and i.api_key_enc and integration_id in (None, i.id)]

    def _all_targets(self) -> list[Integration]:
        """Every pollable integration; forgets the status of those that are gone or disabled."""
        try:
            targets = self._targets(None)
        except Exception:  # a broken registry must not end the loop
            logger.exception("cannot list integrations for the group poller")
            return []
        self._forget_all_but({i.id for i in targets})
        return targets

    def _launch_due_refreshes(self) -> None:
        due = self.schedule.due(self._clock(), busy=self._inflight.keys())
        if not due:
            return
        self._launch([i for i in self._all_targets() if i.id in due])
        for stale in due:  # disabled or removed meanwhile: nothing to poll
            if stale not in self._inflight:
                self.schedule.served(stale, self._clock())

    def _launch(self, integrations: list[Integration]) -> None:
        """Poll each in its own task, so a slow or rate-limited account holds up no other."""
        for integration in integrations:
            if integration.id not in self._inflight:
                task = self.add_future(self._poll(integration))  # so stop() cancels and awaits it too
                self._inflight[integration.id] = task
                task.add_done_callback(lambda _, key=integration.id: self._landed(key))

    def _landed(self, integration_id: str) -> None:
        self._inflight.pop(integration_id, None)
        self._wake.set()  # a refresh requested during that poll may now be due

    async def _wait(self, until: float) -> None:
        """Sleep until `until` (clock time) or until a refresh request wakes us."""
        if self._wake.is_set():
            return
        sleeper = asyncio.ensure_future(self._sleep(max(0.0, until - self._clock())))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    async def _poll(self, integration: Integration) -> int:
        """Fetch one integration's groups and write the changed names; never raises but cancellation."""
        started = self._clock()
        self.schedule.started(integration.id, started)
        try:
            written = await self._fetch_and_write(integration)
        except Exception as exc:  # noqa: BLE001 - every failure is reported in status, none ends the loop
            self._failed(integration.id, exc)
            return 0
        finally:
            self.schedule.served(integration.id, started)
        self._succeeded(integration.id, written)
        return written

    async def _fetch_and_write(self, integration: Integration) -> int:
        api_key = decrypt_api_key(self._cipher, integration)
        client = FreshchatClient(integration.domain, api_key or "", self._http,
                                 integration=integration.id, sleep=self._sleep)
        groups = await client.list_groups()
        seen_at = datetime.now(timezone.utc)
        written = 0
        for group in groups:
            topic_key = group_key(integration.id, group["id"])
            if not group["name"] or self._written.get(topic_key) == group["name"]:
                continue
            await self._send(*group_record(integration.id, group["id"], group["name"], seen_at))
            self._written[topic_key] = group["name"]
            written += 1
        return written

    def _succeeded(self, integration_id: str, written: int) -> None:
        previous = self.status.get(integration_id) or {}
        if previous.get("ok") is False:
            logger.info("group names of integration %s are polled again", integration_id)
        logger.debug("integration %s: %d group name(s) written", integration_id, written)
        self._set_status(integration_id, {"ok": True, "error": None, "http_status": None,
                                          "last_success": _now(), "last_error_at": previous.get("last_error_at")})

    def _failed(self, integration_id: str, exc: Exception) -> None:
        """Record the error; log it when it is new for this integration, not at every poll."""
        error = _explain(integration_id, exc)
        previous = self.status.get(integration_id) or {}
        if previous.get("error") != error:
            ours = isinstance(exc, (FreshchatError, IntegrationError))
            level = logging.ERROR if isinstance(exc, (FreshchatAuthError, IntegrationError)) else logging.WARNING
            logger.log(level, "group names cannot be polled: %s", error, exc_info=not ours)
        else:
            logger.debug("integration %s: still failing: %s", integration_id, error)
        self._set_status(integration_id, {"ok": False, "error": error,
                                          "http_status": getattr(exc, "http_status", None),
                                          "last_success": previous.get("last_success"), "last_error_at": _now()})

    def _set_status(self, integration_id: str, status: dict) -> None:
        self.status[integration_id] = status
        if self._on_status is not None:
            self._on_status(integration_id, status)

    def _forget_all_but(self, current: set[str]) -> None:
        for gone in set(self.status) - current:
            del self.status[gone]


def _explain(integration_id: str, exc: Exception) -> str:
    """One line for operators; our own errors already say what to check."""
    if isinstance(exc, (FreshchatError, IntegrationError)):
        return str(exc)
    return f"integration {integration_id}: {type(exc).__name__}: {exc}"


def _name_of(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        name = orjson.loads(value).get("name")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return name if isinstance(name, str) and name else None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _now() -> str:
    return format_time(datetime.now(timezone.utc))
