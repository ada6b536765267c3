"""Integration health: what each process saw of an integration, and what that adds up to.

"Data stopped arriving but the integration says Operational" is answered from two
vantage points that live in different processes: the ingress sees posts accepted
and refused on an integration's URL; the worker's group poller sees whether
Freshchat's REST API takes the integration's key; and once contacts are delivered into a
WFM, the delivery sink sees whether injixo takes them. Each process publishes what it
saw to the compacted health topic, one record per integration, source and instance
(so instances never overwrite each other), and whoever asks — `integrations
status`, the worker's /metrics — merges them with `assess`. Pure: no I/O here.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import orjson

from streams.domain.times import parse_time, utc_now_text
from streams.settings import Settings

__all__ = ["IngressActivity", "ApiHealth", "HealthView", "assess", "STATUSES", "health_key", "delivery_stale_seconds"]

# Most specific cause first: a rotated key also makes the integration silent, but
# "rejecting" is what tells the admin what to fix.
# A failing delivery outranks "silent": contacts may still arrive, but the WFM does not get them.
STATUSES = ("disabled", "rejecting", "freshchat_api_failing", "delivery_failing", "silent", "operational")
KEPT_AUTH_FAILURES = 20  # per integration and instance: enough for any sensible threshold


def health_key(integration: str, source: str, instance: str) -> bytes:
    return f"{integration}/{source}/{instance}".encode()


@dataclass
class _Seen:
    last_accepted: float | None = None
    accepted_requests: int = 0
    last_reject: float | None = None
    last_reject_status: int | None = None
    last_reject_error: str | None = None
    auth_failures: deque = field(default_factory=lambda: deque(maxlen=KEPT_AUTH_FAILURES))


class IngressActivity:
    """What one ingress instance saw per integration; cheap enough for every request."""

    def __init__(self, instance: str, clock=time.time) -> None:
        self.instance, self._clock = instance, clock
        self._seen: dict[str, _Seen] = {}
        self._changed: set[str] = set()

    def _of(self, integration: str) -> _Seen:
        self._changed.add(integration)
        seen = self._seen.get(integration)
        return seen if seen is not None else self._seen.setdefault(integration, _Seen())

    def accepted(self, integration: str) -> None:
        seen = self._of(integration)
        seen.last_accepted = self._clock()
        seen.accepted_requests += 1

    def rejected(self, integration: str, status: int, error: str) -> None:
        seen = self._of(integration)
        seen.last_reject = now = self._clock()
        seen.last_reject_status, seen.last_reject_error = status, error
        if status == 401:
            seen.auth_failures.append(now)

    def last_accepted(self) -> dict[str, float]:
        return {i: s.last_accepted for i, s in self._seen.items() if s.last_accepted is not None}

    def last_rejected(self) -> dict[str, float]:
        return {i: s.last_reject for i, s in self._seen.items() if s.last_reject is not None}

    def take_records(self) -> list[tuple[bytes, bytes]]:
        """Records for the integrations that changed since the last call."""
        records = []
        for integration in sorted(self._changed):
            seen = self._seen[integration]
            records.append((health_key(integration, "ingress", self.instance), orjson.dumps({
                "v": 1, "integration": integration, "source": "ingress", "instance": self.instance,
                "published_at": utc_now_text(self._clock()),
                "last_accepted_at": _text(seen.last_accepted), "accepted_requests": seen.accepted_requests,
                "last_reject_at": _text(seen.last_reject), "last_reject_status": seen.last_reject_status,
                "last_reject_error": seen.last_reject_error,
                "auth_failures": [_text(t) for t in seen.auth_failures]})))
        self._changed.clear()
        return records


class ApiHealth:
    """What one worker's group poller saw of Freshchat's REST API, per integration."""

    def __init__(self, instance: str, clock=time.time) -> None:
        self.instance, self._clock = instance, clock
        self._pending: dict[str, dict] = {}

    def report(self, integration: str, status: dict) -> None:
        """Called with GroupPoller.status[integration] after every poll."""
        self._pending[integration] = {
            "v": 1, "integration": integration, "source": "freshchat_api", "instance": self.instance,
            "published_at": utc_now_text(self._clock()), "ok": bool(status.get("ok")),
            "error": status.get("error"), "http_status": status.get("http_status"),
            "last_success_at": status.get("last_success"), "last_error_at": status.get("last_error_at")}

    def take_records(self) -> list[tuple[bytes, bytes]]:
        records = [(health_key(i, "freshchat_api", self.instance), orjson.dumps(doc))
                   for i, doc in sorted(self._pending.items())]
        self._pending.clear()
        return records


class HealthView:
    """The health topic folded into memory: every instance's latest record per integration."""

    def __init__(self) -> None:
        self._records: dict[str, dict[bytes, dict]] = {}

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if not key:
            return
        integration = key.split(b"/", 1)[0].decode(errors="replace")
        if value is None:
            self._records.get(integration, {}).pop(key, None)
            return
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            return
        if isinstance(doc, dict) and doc.get("v") == 1:
            self._records.setdefault(integration, {})[key] = doc

    def records(self, integration: str) -> list[dict]:
        return list(self._records.get(integration, {}).values())

    def keys(self, integration: str) -> list[bytes]:
        """The topic keys holding this integration's records, for `integrations remove` to tombstone."""
        return sorted(self._records.get(integration, {}))


def assess(integration, records: list[dict], settings: Settings, now: float | None = None) -> dict:
    """One integration's status, every problem that applies, and the times behind them."""
    now = time.time() if now is None else now
    ingress = [r for r in records if r.get("source") == "ingress"]
    api = max((r for r in records if r.get("source") == "freshchat_api"),
              key=lambda r: _ms(r.get("published_at")) or 0, default=None)
    last_accepted = _latest(r.get("last_accepted_at") for r in ingress)
    reject = max(ingress, key=lambda r: _ms(r.get("last_reject_at")) or 0, default=None)
    since = (now - settings.health_reject_window_seconds) * 1000
    # each instance records its own requests, so equal times from two instances are two 401s
    failures = [t for r in ingress for t in r.get("auth_failures") or () if (_ms(t) or 0) >= since]
    quiet_since = _ms(last_accepted) or _ms(integration.created_at)
    problems = []
    if len(failures) >= settings.health_reject_threshold:
        problems.append("rejecting")
    if api is not None and not api.get("ok"):
        problems.append("freshchat_api_failing")
    delivery = _delivery_view(integration, [r for r in records if r.get("source") == "delivery"], now,
                              delivery_stale_seconds(settings))
    if delivery["state"] in ("failing", "stopped", "not_running"):
        problems.append("delivery_failing")
    if quiet_since is None or now * 1000 - quiet_since >= settings.health_silent_seconds * 1000:
        problems.append("silent")
    status = "disabled" if integration.disabled else (problems[0] if problems else "operational")
    return {
        "id": integration.id, "status": status, "problems": problems,
        "last_accepted_at": last_accepted,
        "last_reject_at": reject.get("last_reject_at") if reject else None,
        "last_reject": ({"status": reject.get("last_reject_status"), "error": reject.get("last_reject_error")}
                        if reject and reject.get("last_reject_at") else None),
        "recent_auth_failures": len(failures),
        "freshchat_api": _api_view(integration, api),
        "delivery": delivery,
    }


def _api_view(integration, api: dict | None) -> dict:
    if not integration.api_key_enc:
        return {"state": "not_configured"}
    if api is None:
        return {"state": "unknown"}
    return {"state": "ok" if api.get("ok") else "failing", "error": api.get("error"),
            "http_status": api.get("http_status"), "checked_at": api.get("published_at"),
            "last_success_at": api.get("last_success_at")}


def delivery_stale_seconds(settings: Settings) -> float:
    """A sink publishes every FRESHSTREAM_HEALTH_PUBLISH_SECONDS; a record this old is from an
    instance that is gone (killed, or scaled away under another name) and no longer speaks."""
    return max(60.0, 10 * settings.health_publish_seconds)


def _delivery_view(integration, records: list[dict], now: float, stale_seconds: float) -> dict:
    """Several sink instances may each hold some of the contacts' partitions, so no single
    record speaks for the integration: the worst state wins (one stopped instance means
    contacts that will not arrive), backlogs add up, and the newest delivery and failure count.

    Only records published within `stale_seconds` count. When none does, and delivery was
    configured longer ago than that, no sink is running for the integration: `not_running`,
    a problem, since the WFM gets nothing while contacts pile up on the topic."""
    if not integration.delivers_to_injixo:
        return {"state": "not_configured"}
    since = (now - stale_seconds) * 1000
    live = [r for r in records if (_ms(r.get("published_at")) or 0) >= since]
    if not live:
        last = _latest(r.get("published_at") for r in records)
        configured = _ms(integration.updated_at) or 0
        if last is None and configured >= since:
            return {"state": "unknown"}
        return {"state": "not_running", "configuration_id": integration.injixo_configuration_id,
                "last_report_at": last}
    records = live
    states = {r.get("state") for r in records}
    state = "stopped" if "stopped" in states else "failing" if "failing" in states else "ok"
    oldest = min((t for r in records if _ms(t := r.get("backlog_oldest_at")) is not None), key=_ms, default=None)
    delivered = max(records, key=lambda r: _ms(r.get("last_delivered_at")) or 0)
    # the failure to report is the latest of the instances in the merged state: a stopped
    # instance's 401 is what needs fixing, even when another instance saw a 503 since
    culprits = [r for r in records if r.get("state") == state] if state != "ok" else records
    failed = max(culprits, key=lambda r: _ms(r.get("last_failure_at")) or 0)
    # the URL of the instance that failed: a transport error is about that address
    where = failed if failed.get("last_failure_at") else max(records, key=lambda r: _ms(r.get("published_at")) or 0)
    return {
        "state": state, "configuration_id": integration.injixo_configuration_id, "url": where.get("url"),
        "backlog": sum(r.get("backlog") or 0 for r in records), "backlog_oldest_at": oldest,
        "backlog_age_seconds": max(0.0, now - _ms(oldest) / 1000) if oldest else None,
        "last_delivered_at": delivered.get("last_delivered_at"),
        "last_delivered_contact": (delivered.get("last_delivered_contact")
                                   if delivered.get("last_delivered_at") else None),
        "last_failure": ({"status": failed.get("last_failure_status"), "error": failed.get("last_failure_error"),
                          "at": failed.get("last_failure_at")} if failed.get("last_failure_at") else None),
        "instances": len(records),
        "checked_at": _latest(r.get("published_at") for r in records),
    }


def _latest(times) -> str | None:
    return max((t for t in times if t), key=lambda t: _ms(t) or 0, default=None)


def _ms(text) -> int | None:
    return parse_time(text) if text else None


def _text(moment: float | None) -> str | None:
    return utc_now_text(moment) if moment is not None else None
