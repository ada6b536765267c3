"""What one contact contributes to an interval, and an interval's figures (docs/intervals.md).

The figures are kept as running totals (`Totals`): a member is added or taken back at a time,
so a batch costs what it changes, not the interval's size; `figures` and `group_by` compute
the same from scratch, which is what the aggregator is tested against. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from streams.domain.times import parse_time

__all__ = ["ATTRIBUTIONS", "INTERVAL_MINUTES", "Member", "Totals", "member_of", "interval_start", "figures",
           "group_by"]

ATTRIBUTIONS = ("started", "resolved")
INTERVAL_MINUTES = (15, 30, 60)
_NO_WAIT = -1  # a member without a first response


@dataclass(frozen=True)
class Member:
    """What one contact contributes to its interval; times in integer milliseconds, so sums are exact."""

    offered: bool
    handled: bool
    duration_ms: int
    wait_ms: int | None
    outcome: str
    group_id: str | None

    def dump(self) -> list:
        return [int(self.offered), int(self.handled), self.duration_ms,
                _NO_WAIT if self.wait_ms is None else self.wait_ms, self.outcome, self.group_id]


def member_of(contact: dict) -> Member | None:
    """A live contact's contribution; None for a retraction."""
    if contact.get("retracted"):
        return None
    wait = contact.get("wait_seconds")
    return Member(bool(contact.get("offered")), bool(contact.get("handled")),
                  round(float(contact.get("duration_seconds") or 0) * 1000),
                  None if wait is None else round(float(wait) * 1000), contact.get("outcome") or "resolved",
                  contact.get("group_id"))


def interval_start(contact: dict, minutes: int, attribution: str) -> int | None:
    """Epoch ms of the interval the contact counts in: the one its cycle started in (or was resolved in)."""
    at = parse_time(contact.get("started_at" if attribution == "started" else "resolved_at"))
    if at is None:
        return None
    length = minutes * 60_000
    return at - at % length


class Totals:
    """An interval's figures as running sums over its (dumped) members, added and taken back one
    member at a time: a batch costs what it changes, not the interval's size. The longest wait
    cannot be taken back; it is counted again only when the member holding it leaves."""

    __slots__ = ("sla_ms", "contacts", "offered", "handled", "unanswered", "handle_ms", "answer_ms", "within",
                 "expired", "outcomes", "groups", "max_wait", "max_stale")

    def __init__(self, sla_ms: int, members: Iterable[list] = ()) -> None:
        self.sla_ms = sla_ms
        self.contacts = self.offered = self.handled = self.unanswered = self.within = self.expired = 0
        self.handle_ms = self.answer_ms = 0
        self.outcomes: dict[str, int] = {}
        self.groups: dict[str, int] = {}
        self.max_wait: int | None = None
        self.max_stale = False
        for raw in members:
            self.add(raw, 1)

    def add(self, raw: list, sign: int) -> None:
        """Count a member in (sign 1) or take it back out (sign -1)."""
        offered, handled, duration, wait, outcome, group = raw
        self.contacts += sign
        _count(self.outcomes, outcome, sign)
        if group:
            _count(self.groups, group, sign)
        if outcome == "expired":
            self.expired += sign
        if offered:
            self.offered += sign
        if handled:
            self.handled += sign
            self.handle_ms += sign * duration
            if wait != _NO_WAIT:
                self.answer_ms += sign * wait
                self.within += sign * (wait <= self.sla_ms)
        elif offered:
            self.unanswered += sign
        if offered:
            waited = max(wait, 0) if handled else duration  # an unanswered chat waited until it closed
            if sign > 0:
                if not self.max_stale and (self.max_wait is None or waited > self.max_wait):
                    self.max_wait = waited
            elif self.max_wait is not None and waited >= self.max_wait:
                self.max_stale = True

    def figures(self, members: Iterable[list]) -> dict:
        """The figures as docs/intervals.md defines them; averages over handled contacts."""
        if self.max_stale:
            waits = [(max(w, 0) if h else d) for o, h, d, w, _, _ in members if o]
            self.max_wait, self.max_stale = (max(waits) if waits else None), False
        handled = self.handled
        per_handled = (lambda total: round(total / handled / 1000, 3)) if handled else (lambda total: None)
        return {
            "contacts": self.contacts, "offered": self.offered, "handled": handled, "unanswered": self.unanswered,
            "handle_seconds_total": self.handle_ms / 1000, "aht_seconds": per_handled(self.handle_ms),
            "answer_seconds_total": self.answer_ms / 1000, "asa_seconds": per_handled(self.answer_ms),
            "max_wait_seconds": None if self.max_wait is None else self.max_wait / 1000,
            "sla_seconds": self.sla_ms / 1000, "within_sla": self.within,
            "service_level": round(self.within / handled, 4) if handled else None,
            "expired": self.expired, "outcomes": dict(sorted(self.outcomes.items())),
        }

    def group_ids(self) -> list[str]:
        return sorted(self.groups)


def _count(counts: dict[str, int], name: str, sign: int) -> None:
    n = counts.get(name, 0) + sign
    if n:
        counts[name] = n
    else:
        counts.pop(name, None)


def figures(members: Iterable[Member], sla_ms: int) -> dict:
    """The figures of these members (the group-by's way: from scratch)."""
    dumped = [m.dump() for m in members]
    return Totals(sla_ms, dumped).figures(dumped)


def group_by(contacts: Iterable[dict], minutes: int, attribution: str, sla_ms: int) -> dict[tuple, dict]:
    """The figures straight from final contacts, (integration, queue, start ms) -> figures: what the
    aggregator must agree with (tests, bench) and what a consumer can recompute."""
    buckets: dict[tuple, list[Member]] = {}
    for contact in contacts:
        member = member_of(contact)
        start = interval_start(contact, minutes, attribution) if member else None
        if start is not None:
            buckets.setdefault((contact["integration"], contact["queue"], start), []).append(member)
    return {key: figures(members, sla_ms) for key, members in buckets.items()}
