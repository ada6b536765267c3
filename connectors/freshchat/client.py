"""Freshchat REST API v2 client: group names and conversations, behind freshstream's own errors.

Rate limits and Retry-After are not documented by Freshchat (docs/freshchat.md §3), so
429, 5xx and transport failures are retried with capped exponential backoff, and
a Retry-After in seconds is honoured when present. No httpx exception type leaves
this module, and the API key appears only in the Authorization header.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable
from urllib.parse import quote

import httpx

from connectors.backoff import backoff_delay, retry_after
from streams.errors import FreshstreamError

__all__ = ["FreshchatClient", "FreshchatError", "FreshchatAuthError", "FreshchatNotFound",
           "FreshchatRateLimited", "FreshchatUnavailable"]

logger = logging.getLogger(__name__)


class FreshchatError(FreshstreamError):
    """Freshchat could not answer a request usefully; the message says what to check.

    The worker's group poller catches these and reports them in integration health, so
    none reaches a terminal today; deriving from FreshstreamError keeps it one line if a
    command ever calls the REST API itself."""

    http_status: int | None = None  # the answer's status, when there was one (integration health shows it)


class FreshchatAuthError(FreshchatError):
    """Freshchat refused the API key (401/403): an operator must fix the integration."""


class FreshchatNotFound(FreshchatError):
    """The requested object (e.g. a conversation) does not exist in this Freshchat account."""


class FreshchatRateLimited(FreshchatError):
    """Still rate-limited (429) after every retry; `retry_after` is Freshchat's hint, if any."""

    def __init__(self, retry_after: float | None, message: str | None = None) -> None:
        self.retry_after = retry_after
        hint = "" if retry_after is None else f"; Freshchat asks to retry after {retry_after:g} s"
        super().__init__(message or f"Freshchat is rate-limiting requests{hint}")


class FreshchatUnavailable(FreshchatError):
    """Freshchat answered 5xx or could not be reached, after every retry."""


class _Retry(Exception):
    """A retryable failure: the error to raise once retries run out, and the wait before the next."""

    def __init__(self, error: FreshchatError, delay: float) -> None:
        super().__init__(str(error))
        self.error, self.delay = error, delay



class FreshchatClient:
    """One Freshchat account's REST API, over an injected `httpx.AsyncClient`."""

    def __init__(self, base_url: str, api_key: str, http: httpx.AsyncClient, *,
                 integration: str | None = None, sleep: Callable[[float], Awaitable] = asyncio.sleep,
                 max_retries: int = 5, page_size: int = 100) -> None:
        if page_size < 1 or max_retries < 0:
            raise ValueError("page_size must be at least 1 and max_retries at least 0")
        self.base_url = base_url.rstrip("/")
        self._http, self._sleep = http, sleep
        self._max_retries, self._page_size = max_retries, page_size
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        self._redact = [api_key] if api_key else []
        self.label = (f"integration {integration} ({self.base_url})" if integration
                      else f"Freshchat at {self.base_url}")

    def __repr__(self) -> str:
        return f"<FreshchatClient {self.label}>"

    async def list_groups(self) -> list[dict]:
        """Every group of the account as {"id", "name"}, walking all pages."""
        groups: dict[str, dict] = {}
        page = 1
        while True:
            doc = await self._get("/v2/groups", {"page": page, "items_per_page": self._page_size})
            fresh = [g for g in _groups_of(doc) if g["id"] not in groups]
            groups.update((g["id"], g) for g in fresh)
            if not fresh or _last_page(doc, page):
                return list(groups.values())
            page += 1

    async def get_conversation(self, conversation_id: str) -> dict:
        """One conversation: status, assigned group and agent, times."""
        return await self._get("/v2/conversations/" + quote(str(conversation_id), safe=""))

    async def _get(self, path: str, params: dict | None = None) -> dict:
        """GET with retries; returns the JSON object or raises a FreshchatError."""
        attempt = 0
        while True:
            try:
                return await self._attempt(path, params, attempt)
            except _Retry as retry:
                if attempt >= self._max_retries:
                    raise retry.error from None
                logger.info("%s: GET %s failed (%s); retry %d of %d in %.2f s",
                            self.label, path, retry.error, attempt + 1, self._max_retries, retry.delay)
                await self._sleep(retry.delay)
            attempt += 1

    async def _attempt(self, path: str, params: dict | None, attempt: int) -> dict:
        """One request: the JSON object, a final FreshchatError, or _Retry."""
        try:
            response = await self._http.get(self.base_url + path, params=params, headers=self._headers)
        except httpx.UnsupportedProtocol as exc:
            raise FreshchatError(f"{self.label}: the domain is not an http(s) URL ({exc})") from None
        except httpx.TransportError as exc:
            reason = f"cannot reach Freshchat: {type(exc).__name__}: {self._clean(str(exc)) or 'no detail'}"
            raise _Retry(FreshchatUnavailable(f"{self.label}: {reason}"), backoff_delay(attempt)) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise FreshchatError(f"{self.label}: GET {path} failed: {type(exc).__name__}") from None
        if response.status_code == 429 or response.status_code >= 500:
            hint = retry_after(response.headers)
            delay = backoff_delay(attempt) if hint is None else hint
            raise _Retry(self._retryable(response, path, hint), delay)
        return self._document(response, path)

    def _retryable(self, response: httpx.Response, path: str, hint: float | None) -> FreshchatError:
        detail = f"{self.label}: GET {path} answered {self._describe(response)}"
        if hint is not None:
            detail += f" (Retry-After {hint:g} s)"
        error = FreshchatRateLimited(hint, detail) if response.status_code == 429 else FreshchatUnavailable(detail)
        error.http_status = response.status_code
        return error

    def _document(self, response: httpx.Response, path: str) -> dict:
        """The JSON object of a final (non-retryable) answer, or the matching error."""
        status = response.status_code
        if not 200 <= status < 300:
            raise self._refusal(response, path)
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise FreshchatError(f"{self.label}: GET {path} did not answer a JSON object")
        return doc

    def _refusal(self, response: httpx.Response, path: str) -> FreshchatError:
        status = response.status_code
        if status in (401, 403):
            error = FreshchatAuthError(
                f"{self.label}: Freshchat refused the API key ({self._describe(response)}); check the "
                "Freshchat API key of this integration (an Account Administrator's key, Admin → API Tokens; "
                "regenerating it there invalidates the stored one)")
        elif status == 404:
            error = FreshchatNotFound(f"{self.label}: GET {path} answered {self._describe(response)}")
        else:
            error = FreshchatError(f"{self.label}: GET {path} answered {self._describe(response)}")
        error.http_status = status
        return error

    def _describe(self, response: httpx.Response) -> str:
        """`401 UNAUTHORIZED: <Freshchat's message>`, with any secret removed."""
        try:
            body = response.json()
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        text = " ".join(str(body[k]) for k in ("status", "message") if body.get(k))
        return f"HTTP {response.status_code}" + (f" {self._clean(text)[:200]}" if text else "")

    def _clean(self, text: str) -> str:
        for secret in self._redact:
            text = text.replace(secret, "***")
        return text


def _groups_of(doc: dict) -> list[dict]:
    """The usable groups of one page: an id and a non-empty name (lenient about the rest)."""
    items = doc.get("groups")
    groups = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or item.get("id") in (None, ""):
            continue
        name = item.get("name")
        groups.append({"id": str(item["id"]), "name": name if isinstance(name, str) and name else None})
    return groups


def _last_page(doc: dict, page: int) -> bool:
    """True when neither `pagination.total_pages` nor `links.next_page` promises another page."""
    pagination = doc.get("pagination")
    total = pagination.get("total_pages") if isinstance(pagination, dict) else None
    if isinstance(total, int) and not isinstance(total, bool) and page >= total:
        return True
    links = doc.get("links")
    return not (isinstance(links, dict) and links.get("next_page"))
