"""The one time format freshstream writes (RFC 3339 UTC, milliseconds, Z) and the ones it reads.

Reading is lenient, as Freshchat's payloads are: ISO 8601 strings with or without a zone
(UTC assumed), epoch seconds or milliseconds told apart by magnitude; anything outside
2000–2100 is not an event time. Both directions cache per whole second: strftime and
fromisoformat are the costly part, and neighbouring events share seconds.

What an operator types is read strictly (parse_operator_time): a time without a zone is
refused, not assumed UTC, because at 3 a.m. in Berlin "09:00" means local time and a silent
UTC reading shifts the window by an hour or two; relative times ("90m", "now-2h") spare
the arithmetic.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache

__all__ = ["parse_time", "format_time", "utc_now_text", "ms_to_time", "parse_operator_time", "format_duration",
           "ms_to_short_time", "ms_to_zone_time", "ms_to_zone_label", "ms_to_file_stamp", "parse_file_stamp"]

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


_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"(?:\d+[smhd])+")
_PART = re.compile(r"(\d+)([smhd])")


def parse_operator_time(text: str, now_ms: int) -> int:
    """Epoch ms from `now`, `now-90m`, `90m` (= now-90m), `1h30m`, `2d`, or RFC 3339 with a zone.

    `now_ms` is passed in so that --since and --until of one command share one "now". A
    ValueError's message says how to write a time; the caller names the flag before it."""
    value = text.strip().lower()
    if value == "now":
        return now_ms
    relative = value[4:] if value.startswith("now-") else value
    if _DURATION.fullmatch(relative):
        return now_ms - sum(int(n) * _UNIT_MS[unit] for n, unit in _PART.findall(relative))
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError("is not a time: use RFC 3339 with a zone (2024-05-06T09:00:00Z), "
                            "or one relative to now (now, 90m, now-2h, 1d)") from None
    if moment.tzinfo is None:
        shown = moment.isoformat(timespec="seconds")
        raise ValueError(f"has no zone: add Z for UTC or an offset ({shown}Z, or {shown}+02:00 for CEST)")
    at = (moment - _EPOCH) // timedelta(milliseconds=1)
    if not _MIN_MS <= at <= _MAX_MS:
        raise ValueError("is outside 2000-2100")
    return at


def ms_to_short_time(ms: int) -> str:
    """ms_to_time without ".000" on whole seconds: what an operator typed reads back the same."""
    text = ms_to_time(ms)
    return text[:-5] + "Z" if text.endswith(".000Z") else text


def ms_to_zone_time(ms: int, zone: tzinfo) -> str:
    """RFC 3339 in a zone, with that moment's offset (`2024-10-27T02:15:00+01:00`): for people
    reading local time beside the UTC that freshstream writes; milliseconds only when not whole."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return moment.astimezone(zone).isoformat(timespec="seconds" if ms % 1000 == 0 else "milliseconds")


def ms_to_zone_label(ms: int, zone: tzinfo | None) -> str:
    """A minute for a table: `2024-05-06 09:15Z` in UTC (zone None), else local with the offset,
    `2024-10-27 02:15+02:00`, so the two 02:15 of a night the clocks go back stay apart."""
    moment = _EPOCH + timedelta(milliseconds=ms - ms % 60_000)
    if zone is None:
        return moment.strftime("%Y-%m-%d %H:%MZ")
    return moment.astimezone(zone).isoformat(sep=" ", timespec="minutes")


_FILE_STAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2})(\d{2})Z")


def ms_to_file_stamp(ms: int) -> str:
    """A minute as a file name can hold it on every system a WFM import runs on (`2024-05-06T0915Z`):
    no colon, which Windows refuses in a name, and sorting by name sorts by time."""
    return time.strftime("%Y-%m-%dT%H%MZ", time.gmtime(ms // 60_000 * 60))


def parse_file_stamp(text: str) -> int | None:
    """Epoch ms of a ms_to_file_stamp name, None for any other text (a file someone else put there)."""
    match = _FILE_STAMP.fullmatch(text)
    if match is None:
        return None
    try:
        moment = datetime(*map(int, match.groups()), tzinfo=timezone.utc)
    except ValueError:
        return None
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def format_duration(ms: int) -> str:
    """A span for people: "1 h 30 min", "2 d 4 h", "45 s"; the two largest units, rounded down."""
    seconds = max(0, ms) // 1000
    parts = [(seconds // 86400, "d"), (seconds // 3600 % 24, "h"), (seconds // 60 % 60, "min"), (seconds % 60, "s")]
    shown = [f"{n} {unit}" for n, unit in parts if n][:2]
    return " ".join(shown) if shown else f"{max(0, ms)} ms"
