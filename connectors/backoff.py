"""Retrying an HTTP API that does not document its limits: capped exponential backoff and Retry-After.

Freshchat's REST API and injixo's contact-events API both leave rate limits and error bodies
undocumented, so both clients wait the same way between attempts: the server's Retry-After
(in seconds) when it gives one and it is sane, otherwise base·2ⁿ with jitter, capped.
"""

from __future__ import annotations

import math
import random
from typing import Callable, Mapping

__all__ = ["backoff_delay", "retry_after", "BACKOFF_BASE", "BACKOFF_CAP", "MAX_RETRY_AFTER"]

BACKOFF_BASE = 0.5  # seconds before the first retry, doubled at each further one
BACKOFF_CAP = 30.0  # longest backoff between two attempts
MAX_RETRY_AFTER = 300.0  # a larger Retry-After (a broken proxy?) must not park a caller for hours


def backoff_delay(attempt: int, jitter: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry `attempt` (0-based): base·2ⁿ capped, scaled into [½, 1]."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(attempt, 32))
    return ceiling * (0.5 + 0.5 * jitter())


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Retry-After in seconds, when present and sane (neither API sends HTTP dates), capped."""
    try:
        value = float(headers.get("Retry-After", ""))
    except ValueError:
        return None
    if math.isnan(value) or value < 0:
        return None
    return min(value, MAX_RETRY_AFTER)
