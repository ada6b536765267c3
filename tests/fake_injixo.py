"""A fake injixo contact-events API on 127.0.0.1, served over real HTTP by aiohttp, for tests.

It takes `POST /external-systems/contact-events` as the injixo sink posts it: a Bearer key
that must belong to the configuration the body names (401 for an unknown or revoked key,
403 for another configuration's), a strictly checked body (400 naming the field), and an
Idempotency-Key whose repeat is answered as before without counting twice. Faults are
injected per request (`fail_next`, `slow`), and `sums` adds up what was accepted per
15-minute interval, negative correction rows included, the way a WFM would show it: a sink
that delivers each contact once, and each correction as its difference, leaves sums equal
to the interval statistics.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from aiohttp import web

from streams.domain.times import ms_to_time
from tests.kafka_records import SECRETS

__all__ = ["FakeInjixo", "InjixoRequest", "fake_injixo", "PATH"]

PATH = "/external-systems/contact-events"
ROW_FIELDS = {"properties", "queueName", "queueIdentifier", "timestamp", "channel"}
PROPERTY_FIELDS = {"offered", "handled", "duration"}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class InjixoRequest:
    """What the fake saw of one request; never the key itself."""

    status: int  # what it answered
    auth: str  # "valid" | "missing" | "invalid" | "revoked" | "other_configuration" | "not_checked" (fail_next)
    configuration_id: str | None  # the body's meta.integrationConfigurationId, when readable
    idempotency_key: str | None
    rows: int  # rows in the body, when readable
    duplicate: bool  # answered from an earlier accepted request with the same Idempotency-Key
    at: float  # time.monotonic() on arrival


class _Invalid(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


class FakeInjixo:
    """Valid keys per configuration id; every request and every accepted row, for assertions."""

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}  # key → the configuration id it is valid for
        self._revoked: set[str] = set()
        self._answered: dict[tuple[str, str], tuple[bytes, int, dict]] = {}  # (config, key) → body hash, answer
        self.requests: list[InjixoRequest] = []
        self.rows: list[dict] = []  # accepted rows, each with its "configuration_id"
        self.duplicates = 0
        self.reused_keys = 0  # duplicates whose body differed from the accepted one: a sink bug
        self.failures: deque[tuple[int, str | None]] = deque()
        self.slow = 0.0  # seconds before every answer
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_key(self, configuration_id: str) -> str:
        """A new valid API key for this configuration id (known to the leak check)."""
        key = "injixo_test_" + secrets.token_urlsafe(24)
        SECRETS.add(key)
        self._keys[key] = configuration_id
        return key

    def revoke(self, key: str) -> None:
        """From now on the key is refused with 401, as injixo does once a key is deleted."""
        self._revoked.add(key)

    def fail_next(self, n: int = 1, status: int = 500, retry_after: str | int | None = None) -> None:
        """Answer the next n requests with status (Retry-After when given), before looking at them."""
        self.failures.extend([(status, None if retry_after is None else str(retry_after))] * n)

    def answered(self, status: int | None = None) -> list[InjixoRequest]:
        return [r for r in self.requests if status in (None, r.status)]

    def sums(self, minutes: int = 15) -> dict[tuple[str, str, str, str], dict]:
        """{(configuration id, queueIdentifier, queueName, interval start): {"offered", "handled", "duration"}}
        over the accepted rows, by the UTC interval of their timestamp; keys that sum to zero are
        dropped (a contact delivered then withdrawn leaves nothing). Exact: durations are added
        as integer milliseconds."""
        length = minutes * 60_000
        totals: dict[tuple[str, str, str, str], list[int]] = {}
        for row in self.rows:
            at = _epoch_ms(row["timestamp"])
            key = (row["configuration_id"], row["queueIdentifier"], row["queueName"], ms_to_time(at - at % length))
            total = totals.setdefault(key, [0, 0, 0])
            total[0] += row["properties"]["offered"]
            total[1] += row["properties"]["handled"]
            total[2] += round(row["properties"]["duration"] * 1000)
        return {key: {"offered": offered, "handled": handled, "duration": duration_ms / 1000}
                for key, (offered, handled, duration_ms) in sorted(totals.items()) if offered or handled or duration_ms}

    async def start(self) -> "FakeInjixo":
        app = web.Application()
        app.router.add_post(PATH, self._contact_events)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port or 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
            self._runner = None

    async def _contact_events(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        if self.slow:
            await asyncio.sleep(self.slow)  # the server's behaviour under test, not a test's wait
        body = await request.read()
        idempotency_key = request.headers.get("Idempotency-Key")
        doc = _loads(body)
        meta = doc.get("meta") if isinstance(doc, dict) else None
        configuration_id = meta.get("integrationConfigurationId") if isinstance(meta, dict) else None
        configuration_id = configuration_id if isinstance(configuration_id, str) else None
        data = doc.get("data") if isinstance(doc, dict) else None
        rows = len(data) if isinstance(data, list) else 0

        def answer(status: int, auth: str, payload: dict, headers: dict | None = None, duplicate=False):
            self.requests.append(InjixoRequest(status, auth, configuration_id, idempotency_key, rows, duplicate,
                                               arrived))
            return web.json_response(payload, status=status, headers=headers)

        if self.failures:
            status, retry_after = self.failures.popleft()
            headers = {"Retry-After": retry_after} if retry_after is not None else None
            error = "too_many_requests" if status == 429 else "server_error"
            return answer(status, "not_checked", {"error": error, "message": f"injected {status}"}, headers)
        auth = self._authenticate(request.headers.get("Authorization"))
        if auth != "valid":
            return answer(401, auth, {"error": "unauthorized", "message": "invalid, expired or revoked API key"})
        try:
            _validate(doc)
        except _Invalid as exc:
            return answer(400, auth, {"error": "invalid_request", "field": exc.field, "message": exc.message})
        key = request.headers["Authorization"][len("Bearer "):]
        if self._keys[key] != configuration_id:
            return answer(403, "other_configuration",
                          {"error": "forbidden", "message": "the API key is not valid for this integration configuration"})
        if idempotency_key is not None and (configuration_id, idempotency_key) in self._answered:
            digest, status, payload = self._answered[(configuration_id, idempotency_key)]
            self.duplicates += 1
            self.reused_keys += digest != hashlib.sha256(body).digest()
            return answer(status, auth, payload, duplicate=True)
        self.rows.extend({**row, "configuration_id": configuration_id} for row in data)
        payload = {"accepted": len(data)}
        if idempotency_key is not None:
            self._answered[(configuration_id, idempotency_key)] = (hashlib.sha256(body).digest(), 201, payload)
        return answer(201, auth, payload)

    def _authenticate(self, header: str | None) -> str:
        if header is None:
            return "missing"
        scheme, _, key = header.partition(" ")
        if scheme != "Bearer" or key not in self._keys:
            return "invalid"
        return "revoked" if key in self._revoked else "valid"


def _loads(body: bytes):
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _validate(doc) -> None:
    """Strict, so that a sink posting a field injixo does not take fails here rather than in production."""
    if not isinstance(doc, dict):
        raise _Invalid("body", "must be a JSON object with data and meta")
    if set(doc) - {"data", "meta"}:
        raise _Invalid(sorted(set(doc) - {"data", "meta"})[0], "unknown field")
    meta = doc.get("meta")
    if not isinstance(meta, dict) or set(meta) != {"integrationConfigurationId"}:
        raise _Invalid("meta", "must be an object with integrationConfigurationId only")
    if not isinstance(meta["integrationConfigurationId"], str) or not meta["integrationConfigurationId"]:
        raise _Invalid("meta.integrationConfigurationId", "must be a non-empty string")
    data = doc.get("data")
    if not isinstance(data, list) or not data:
        raise _Invalid("data", "must be a non-empty array of contact events")
    for n, row in enumerate(data):
        where = f"data[{n}]"
        if not isinstance(row, dict):
            raise _Invalid(where, "must be an object")
        if set(row) != ROW_FIELDS:
            field = sorted(set(row) ^ ROW_FIELDS)[0]
            raise _Invalid(f"{where}.{field}", "missing" if field in ROW_FIELDS else "unknown field")
        for field in ("queueName", "queueIdentifier"):
            if not isinstance(row[field], str) or not row[field]:
                raise _Invalid(f"{where}.{field}", "must be a non-empty string")
        if row["channel"] != "chats":
            raise _Invalid(f"{where}.channel", "must be \"chats\"")
        if not isinstance(row["timestamp"], str) or _epoch_ms(row["timestamp"]) is None:
            raise _Invalid(f"{where}.timestamp", "must be an RFC 3339 time with a zone")
        properties = row["properties"]
        if not isinstance(properties, dict) or set(properties) != PROPERTY_FIELDS:
            raise _Invalid(f"{where}.properties", "must be an object with offered, handled and duration")
        for field in ("offered", "handled"):  # negative values are corrections, and accepted
            if not isinstance(properties[field], int) or isinstance(properties[field], bool):
                raise _Invalid(f"{where}.properties.{field}", "must be an integer")
        duration = properties["duration"]
        if not isinstance(duration, (int, float)) or isinstance(duration, bool) or not math.isfinite(duration):
            raise _Invalid(f"{where}.properties.duration", "must be a number of seconds")


def _epoch_ms(text: str) -> int | None:
    """RFC 3339 read strictly: a date, a time and a zone; exact to the millisecond."""
    if len(text) < 20 or text[10] not in "Tt":
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return (moment - _EPOCH) // timedelta(milliseconds=1)  # integer arithmetic: no float in between


@pytest.fixture
def fake_injixo(loop_thread):
    """A running FakeInjixo on a free port of 127.0.0.1, stopped after the test."""
    server = FakeInjixo()
    loop_thread.run(server.start())
    yield server
    loop_thread.run(server.stop())
