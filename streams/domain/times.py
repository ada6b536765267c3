"""The one time format freshstream writes (RFC 3339 UTC, milliseconds, Z) and the ones it reads.

Reading is lenient, as Freshchat's payloads are: ISO 8601 strings with or without a zone
(UTC assumed), epoch seconds or milliseconds told apart by magnitude; anything outside
2000–2100 is not an event time. Both directions cache per whole second: strftime and
fromisoformat are the costly part, and neighbouring events share seconds.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from functools import lru_cache

__all__ = ["parse_time", "format_time", "utc_now_text", "ms_to_time"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MIN_MS, _MAX_MS = 946_684_800_000, 4_102_444_800_000  # 2000-01-01 .. 2100-01-01


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds and a Z, the only time format freshstream writes."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


_second_cache: list = [None, ""]  # the last whole second formatted: strftime is the costly part


def utc_now_text(now: float | None = None) -> str:
    """format_time(now) for the ingress's hot path: one strftime per second, not per request."""
    now = time.time() if now is None else now
    second = int(now)
    if _second_cache[0] != second:
        _second_cache[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_second_cache[1]}.{int((now - second) * 1000):03d}Z"


def ms_to_time(ms: int) -> str:
    """RFC 3339 as format_time writes it; exact: integer milliseconds never pass through a float."""
    return f"{_second_text(ms // 1000)}.{ms % 1000:03d}Z"


@lru_cache(maxsize=8192)
def _second_text(second: int) -> str:
    """strftime is the costly part, and a contact's times and its neighbours' share seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


@lru_cache(maxsize=4096)
def _second_of(text: str) -> int | None:
    try:
        moment = datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return (moment - _EPOCH) // timedelta(seconds=1)


def parse_time(value) -> int | None:
    """Epoch milliseconds from an ISO 8601 string or an epoch number (s or ms by magnitude)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        if not _MIN_MS / 1000 <= value <= _MAX_MS:
            return None  # NaN, infinities and times outside 2000-2100 are not event times
        at = int(value) if value > 1e11 else int(round(value * 1000))
        return at if _MIN_MS <= at <= _MAX_MS else None
    if not isinstance(value, str) or not value:
        return None
    if len(value) == 24 and value[10] == "T" and value[19] == "." and value[23] == "Z" and value[20:23].isdigit():
        second = _second_of(value[:19])  # Freshchat's usual form: one datetime parse per second, cached
        if second is not None:
            at = second * 1000 + int(value[20:23])
            return at if _MIN_MS <= at <= _MAX_MS else None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        try:
            return parse_time(float(value))
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)  # Freshchat writes UTC; be lenient
    return parse_time((moment - _EPOCH) // timedelta(milliseconds=1))
