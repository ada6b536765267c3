"""A fake Freshchat REST API v2 on 127.0.0.1, served over real HTTP by aiohttp, for tests.

It pages `/v2/groups` the way docs/freshchat.md §3 describes, refuses a wrong Bearer key
with Freshchat's 401 body, can be told to answer 429s (with or without Retry-After)
and 5xxs before it succeeds, and records every request for assertions.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import deque
from dataclasses import dataclass

import pytest
from aiohttp import web

from tests.kafka_records import SECRETS

__all__ = ["FakeFreshchat", "Request", "fake_freshchat"]


@dataclass(frozen=True)
class Request:
    """What the fake saw of one request; never the key itself."""

    method: str
    path: str
    query: dict
    auth: str  # "valid" | "invalid" | "missing"
    at: float  # time.monotonic() on arrival


class FakeFreshchat:
    """One Freshchat account: groups (mutable), conversations and one valid API key."""

    def __init__(self, api_key: str | None = None, groups: list[dict] | None = None) -> None:
        self.api_key = api_key or "fc_test_" + secrets.token_urlsafe(24)
        SECRETS.add(self.api_key)
        self.groups: list[dict] = list(groups or [])
        self.conversations: dict[str, dict] = {}
        self.requests: list[Request] = []
        self.failures: deque[tuple[int, str | None]] = deque()
        self.pagination_block = True  # False: answer without `pagination`, links only
        self.default_items_per_page = 10
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_group(self, group_id: str, name: str) -> None:
        self.groups.append({"id": group_id, "name": name, "description": "", "routing_type": "DISABLED"})

    def rename_group(self, group_id: str, name: str) -> None:
        self.groups = [{**g, "name": name} if g["id"] == group_id else g for g in self.groups]

    def fail_next(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next `times` requests with `status` (and Retry-After, if given)."""
        self.failures.extend([(status, retry_after)] * times)

    def group_requests(self, auth: str | None = None) -> list[Request]:
        return [r for r in self.requests if r.path == "/v2/groups" and auth in (None, r.auth)]

    def polls(self, auth: str = "valid") -> list[Request]:
        """First-page group requests: one per full walk of the groups."""
        return [r for r in self.group_requests(auth) if r.query.get("page", "1") == "1"]

    async def start(self) -> "FakeFreshchat":
        app = web.Application(middlewares=[self._record, self._fail, self._authenticate])
        app.router.add_get("/v2/groups", self._groups)
        app.router.add_get("/v2/conversations/{conversation_id}", self._conversation)
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

    @web.middleware
    async def _record(self, request: web.Request, handler):
        header = request.headers.get("Authorization")
        auth = "missing" if header is None else ("valid" if header == f"Bearer {self.api_key}" else "invalid")
        self.requests.append(Request(request.method, request.path, dict(request.query), auth, time.monotonic()))
        return await handler(request)

    @web.middleware
    async def _fail(self, request: web.Request, handler):
        if self.failures:
            status, retry_after = self.failures.popleft()
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return _error(status, "TOO_MANY_REQUESTS" if status == 429 else "SERVER_ERROR", headers)
        return await handler(request)

    @web.middleware
    async def _authenticate(self, request: web.Request, handler):
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "UNAUTHORIZED", message="Authentication failed: invalid or expired token")
        return await handler(request)

    async def _groups(self, request: web.Request) -> web.Response:
        try:
            page = int(request.query.get("page", "1"))
            size = int(request.query.get("items_per_page", str(self.default_items_per_page)))
        except ValueError:
            return _error(400, "BAD_REQUEST", message="page and items_per_page must be integers")
        if page < 1 or not 1 <= size <= 100:
            return _error(400, "BAD_REQUEST", message="page must be >= 1, items_per_page 1..100")
        groups = list(self.groups)
        total_pages = max(1, math.ceil(len(groups) / size))
        body = {"groups": groups[(page - 1) * size: page * size], "links": {}}
        if self.pagination_block:
            body["pagination"] = {"total_items": len(groups), "total_pages": total_pages,
                                  "current_page": page, "items_per_page": size}
        if page < total_pages:
            href = f"/v2/groups?page={page + 1}&items_per_page={size}"
            body["links"]["next_page"] = {"href": href, "method": "GET"}
        return web.json_response(body)

    async def _conversation(self, request: web.Request) -> web.Response:
        conversation = self.conversations.get(request.match_info["conversation_id"])
        if conversation is None:
            return _error(404, "NOT_FOUND", message="Conversation not found")
        return web.json_response(conversation)


def _error(status: int, code: str, headers: dict | None = None, message: str | None = None) -> web.Response:
    body = {"code": status, "status": code, "message": message or code.replace("_", " ").lower()}
    return web.json_response(body, status=status, headers=headers)


@pytest.fixture
def fake_freshchat(loop_thread):
    """A running FakeFreshchat on a free port of 127.0.0.1, stopped after the test."""
    server = FakeFreshchat()
    loop_thread.run(server.start())
    yield server
    loop_thread.run(server.stop())
