"""One request to injixo's contact-events API, and what its answer means for the sink.

injixo documents the request (docs/delivery.md) but not its rate limits or error bodies, so
the answer is sorted by status alone: 2xx delivered; 401/403 a key or configuration to fix,
so posting stops until an operator replaces it; 429, 5xx and transport failures are retried
after Retry-After or a backoff; any other 4xx refuses this batch, and is retried with backoff
too, since dropping rows would lose contacts. The API key appears only in the Authorization
header; no httpx exception leaves this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from connectors.backoff import retry_after
from streams.domain.delivery import Batch

__all__ = ["Answer", "post_batch", "CONTACT_EVENTS_PATH"]

CONTACT_EVENTS_PATH = "/external-systems/contact-events"
_BODY_QUOTE = 200  # characters of an error body worth quoting in a health record


@dataclass(frozen=True)
class Answer:
    """What became of one post: `kind` is delivered, stop (401/403), retry (429, 5xx, transport) or refused."""

    kind: str
    status: int | None = None  # HTTP status; None when no answer came
    error: str | None = None  # one sentence for health, logs and `integrations status`
    retry_after: float | None = None


async def post_batch(http: httpx.AsyncClient, base_url: str, api_key: str, batch: Batch) -> Answer:
    """POST the batch once, with its idempotency key, and classify the answer."""
    url = base_url.rstrip("/") + CONTACT_EVENTS_PATH
    try:
        response = await http.post(url, json=batch.body(), headers={
            "Authorization": f"Bearer {api_key}", "Idempotency-Key": batch.idempotency_key})
    except httpx.TimeoutException:
        return Answer("retry", None, f"injixo at {base_url} did not answer within the request timeout "
                                     "(FRESHSTREAM_DELIVERY_TIMEOUT_SECONDS)")
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        return Answer("retry", None, f"cannot reach injixo at {base_url} ({reason})")
    status = response.status_code
    if 200 <= status < 300:
        return Answer("delivered", status)
    if status in (401, 403):
        return Answer("stop", status, f"injixo answered {status}: the injixo API key was revoked or mistyped, "
                                      "or it is not for this integration configuration id")
    if status == 429 or status >= 500:
        hint = retry_after(response.headers)
        detail = "rate limited" if status == 429 else _quote(response)
        after = f"; it asks to retry after {hint:g} s" if hint is not None else ""
        return Answer("retry", status, f"injixo answered {status} ({detail}){after}", hint)
    return Answer("refused", status, f"injixo refused a batch with {status} ({_quote(response)})")


def _quote(response: httpx.Response) -> str:
    text = " ".join(response.text.split())
    return (text[:_BODY_QUOTE] + "…") if len(text) > _BODY_QUOTE else (text or "no body")
