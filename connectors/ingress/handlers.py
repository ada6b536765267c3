"""The webhook ingress (docs/http-api.md): authenticate, validate, and answer 202 only after Kafka acks."""

from __future__ import annotations

import asyncio
import base64
import logging
import time

import orjson
from aiohttp import web
from aiokafka.errors import KafkaError

from connectors.ingress.auth import bearer_ok, bearer_token, signature_ok
from connectors.ingress.batching import ProduceBatcher
from connectors.ingress.metrics import IngressMetrics
from connectors.integrations.records import NAME_PATTERN
from streams.domain.envelope import InvalidEvent, InvalidJSON, encode_envelope, event_id, parse_body
from streams.domain.integration_health import IngressActivity
from streams.domain.keys import chat_key
from streams.domain.times import utc_now_text
from streams.metrics import CONTENT_TYPE
from streams.settings import Settings

__all__ = ["create_app", "Rejected"]

logger = logging.getLogger(__name__)

UNAUTHORIZED = ("missing or invalid credentials for this integration URL: send "
                "'Authorization: Bearer <ingress key>' as issued by 'freshstream integrations add', "
                "or a valid X-Freshchat-Signature made with the integration's webhook key")


class Rejected(Exception):
    """A request freshstream will not accept, with the code and sentence the client gets."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None, close: bool = False):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}
        self.close = close  # the connection cannot be reused (e.g. a body left half read)

    def response(self) -> web.Response:
        body = orjson.dumps({"error": self.code, "message": self.message})
        response = web.Response(status=self.status, body=body, content_type="application/json",
                                headers=self.headers)
        if self.close:
            response.force_close()
        return response


def create_app(settings: Settings, registry, producer, metrics: IngressMetrics | None = None,
               activity: IngressActivity | None = None, guard=None) -> web.Application:
    """The aiohttp application; the producer and integration registry are injected."""
    app = web.Application(client_max_size=settings.max_body_bytes)
    handler = WebhookHandler(settings, registry, producer, metrics or IngressMetrics(),
                             activity or IngressActivity("local"), guard)
    routes = app.router
    routes.add_post("/webhooks/freshchat/{integration}", handler.post)
    routes.add_route("*", "/webhooks/freshchat/{integration}", _method_not_allowed("POST"))
    for path, page in (("/healthz", handler.healthz), ("/readyz", handler.readyz), ("/metrics", handler.metrics_page)):
        routes.add_get(path, page)
        routes.add_route("*", path, _method_not_allowed("GET, HEAD"))
    routes.add_route("*", "/{path:.*}", _not_found)
    return app


NOT_FOUND = ("no such endpoint: events are posted to /webhooks/freshchat/<integration>; "
             "/healthz, /readyz and /metrics answer GET")


# aiohttp's router answers an unknown path or method in plain text; a client that reads every
# other error as JSON would choke on those two, so they get a code and a sentence too. They are
# routes of their own (a path's other methods, then every other path), not a middleware: a
# middleware would wrap every webhook request for the sake of these two.

def _method_not_allowed(allowed: str):
    async def answer(request: web.Request) -> web.Response:
        return Rejected(405, "method_not_allowed", f"{request.method} is not allowed on this path; use {allowed}",
                        headers={"Allow": allowed}).response()
    return answer


async def _not_found(request: web.Request) -> web.Response:
    return Rejected(404, "not_found", NOT_FOUND).response()


class WebhookHandler:
    """Holds the collaborators of the HTTP endpoints."""

    def __init__(self, settings: Settings, registry, producer, metrics: IngressMetrics,
                 activity: IngressActivity, guard=None) -> None:
        self.settings, self.registry, self.producer, self.metrics = settings, registry, producer, metrics
        self.activity, self.guard = activity, guard
        self.batcher = ProduceBatcher(producer, settings.produce_timeout)
        self._broker_ok_until = 0.0
        self._counters: dict[tuple[str, int], object] = {}  # integrations are few, statuses fewer

    async def post(self, request: web.Request) -> web.Response:
        name = request.match_info["integration"]
        integration = self.registry.get(name) if NAME_PATTERN.fullmatch(name) else None
        label = integration.id if integration else "unknown"
        code = None
        if self.guard is not None:
            self.guard.begin(request.transport)
        try:
            response = await self._accept(request, integration)
        except Rejected as rejected:
            response, code = rejected.response(), rejected.code
        finally:
            if self.guard is not None:
                self.guard.end(request.transport)
        status = response.status
        self._counter(label, status).inc()
        if status == 401:
            self.metrics.auth_failures.labels(label).inc()
        if integration is not None:  # health of known integrations only: no state per guessed URL
            if status == 202:
                self.activity.accepted(integration.id)
            elif status != 503:  # a 503 is our broker's fault, not the sender's
                self.activity.rejected(integration.id, status, code or "unknown")
        return response

    def _counter(self, label: str, status: int):
        """The requests counter of (integration, status), looked up once: labels() takes a lock."""
        counter = self._counters.get((label, status))
        if counter is None:
            counter = self._counters[(label, status)] = self.metrics.requests.labels(label, str(status))
        return counter

    async def _accept(self, request: web.Request, integration) -> web.Response:
        token = bearer_token(request.headers.get("Authorization"))
        authenticated = bearer_ok(integration, token)
        if request.content_length is not None and request.content_length > self.settings.max_body_bytes:
            await self._too_large(request, integration, authenticated)
        if token is not None and not authenticated:
            raise Rejected(401, "unauthorized", UNAUTHORIZED)
        body = await self._read(request, integration, authenticated)
        if not authenticated and not signature_ok(integration, body, request.headers.get("X-Freshchat-Signature")):
            raise Rejected(401, "unauthorized", UNAUTHORIZED)
        try:
            _check_content_type(request.headers.get("Content-Type", ""))
            events = parse_body(body)
        except InvalidJSON as exc:
            raise await self._dead_letter(request, integration, body, Rejected(400, "invalid_json", str(exc)))
        except InvalidEvent as exc:
            raise await self._dead_letter(request, integration, body, Rejected(400, "invalid_event", str(exc)))
        except Rejected as rejected:
            raise await self._dead_letter(request, integration, body, rejected)
        ids = await self._produce(request, integration.id, body, events)
        return web.Response(status=202, body=orjson.dumps({"accepted": len(ids), "event_ids": ids}),
                            content_type="application/json")

    async def _read(self, request, integration, authenticated) -> bytes:
        """The whole body within the body timeout: a client that never finishes it is cut off."""
        try:
            if request.content.is_eof():  # the whole body is already here: nothing to wait for, no timer
                return await request.read()
            async with asyncio.timeout(self.settings.ingress_body_timeout_seconds):
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            await self._too_large(request, integration, authenticated)
        except TimeoutError:
            raise Rejected(408, "request_timeout",
                           f"the body did not arrive within {self.settings.ingress_body_timeout_seconds:g} s; "
                           "send the whole request at once", close=True) from None

    async def _too_large(self, request, integration, authenticated):
        rejected = Rejected(413, "payload_too_large",
                            f"the body is larger than {self.settings.max_body_bytes} bytes; "
                            "send fewer events per request")
        if authenticated:
            raise await self._dead_letter(request, integration, None, rejected)
        raise rejected

    async def _produce(self, request, integration_id: str, body: bytes, events) -> list[str]:
        received_at = utc_now_text()
        retry_count = _retry_count(request.headers.get("X-Retry-Count"))
        single = len(events) == 1 and events[0].payload is body
        ids, sends = [], []
        for index, event in enumerate(events):
            eid = event_id(integration_id, body, None if single else index)
            value = encode_envelope(event_id=eid, integration=integration_id, received_at=received_at,
                                    fmt=event.format, retry_count=retry_count, payload=event.payload)
            key = chat_key(integration_id, event.conversation_id or "").encode()
            ids.append(eid)
            sends.append((self.settings.raw_topic, value, key))
        await self._send_all(sends, self.batcher.send)
        self.metrics.events.labels(integration_id).inc(len(ids))
        return ids

    async def _send_all(self, sends, batched=None) -> None:
        """Send and await every ack within the produce timeout, or answer 503.

        Accepted events go through the batcher (its own timer per batch, no timer per
        request); the rare dead letter is sent on its own.
        """
        started = time.perf_counter()
        try:
            if batched is not None:
                await batched(sends)
            else:
                await self._send_each(sends)
        except (KafkaError, asyncio.TimeoutError, OSError) as exc:
            logger.warning("produce failed, answering 503: %s", type(exc).__name__)
            self.metrics.produce_failures.inc()
            raise Rejected(503, "broker_unavailable",
                           "Kafka did not acknowledge the events in time; nothing was accepted, "
                           "retry after the Retry-After seconds",
                           headers={"Retry-After": str(self.settings.retry_after_seconds)}) from None
        self.metrics.produce_seconds.observe(time.perf_counter() - started)

    async def _send_each(self, sends) -> None:
        futures = []
        try:  # asyncio.timeout, not wait_for: no extra task
            async with asyncio.timeout(self.settings.produce_timeout):
                for topic, value, key in sends:
                    futures.append(await self.producer.send(topic, value, key=key))
                for future in futures:
                    await future
        except BaseException:
            for future in futures:
                future.add_done_callback(_discard_result)
            raise

    async def _dead_letter(self, request, integration, body: bytes | None, rejected: Rejected) -> Rejected:
        """Keep an authenticated reject on the DLQ, so an operator can see what was refused."""
        if integration is None:
            return rejected
        record = {"v": 1, "integration": integration.id, "error": rejected.code,
                  "message": rejected.message, "received_at": utc_now_text(),
                  "retry_count": _retry_count(request.headers.get("X-Retry-Count")),
                  "content_type": request.headers.get("Content-Type", ""),
                  "content_length": request.content_length,
                  "body_base64": base64.b64encode(body).decode() if body is not None else None}
        await self._send_all([(self.settings.dlq_topic, orjson.dumps(record), integration.id.encode())])
        self.metrics.dead_letters.labels(integration.id, rejected.code).inc()
        return rejected

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        checks = {"integrations_loaded": self.registry.loaded.is_set(),
                  "broker_reachable": await self._broker_reachable()}
        status = 200 if all(checks.values()) else 503
        return web.json_response({"ready": status == 200, **checks}, status=status)

    async def _broker_reachable(self) -> bool:
        if time.monotonic() < self._broker_ok_until:
            return True
        try:
            await asyncio.wait_for(self.producer.client.fetch_all_metadata(), 2.0)
        except (KafkaError, asyncio.TimeoutError, OSError):
            return False
        self._broker_ok_until = time.monotonic() + 1.0
        return True

    async def metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(),
                            headers={"Content-Type": CONTENT_TYPE, "X-Content-Type-Options": "nosniff"})


def _check_content_type(value: str) -> None:
    media = value.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        shown = media or "none"
        raise Rejected(415, "unsupported_media_type",
                       f"Content-Type is {shown}; send the events as 'Content-Type: application/json'")


def _retry_count(value: str | None) -> int:
    try:
        return max(0, int(value)) if value else 0
    except ValueError:
        return 0


def _discard_result(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()
