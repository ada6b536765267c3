"""Cutting one chat's timeline into cycles: the fold of its events in time order (docs/contacts.md §2).

Pure. `step` is the whole rule set; it is only ever given a chat's events in sort
order (`sort_key`), so what it computes depends on the set of events, never on the
order they arrived in. streams/domain/chat.py decides when to fold from scratch and when one
step from the cached cursor is the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from streams.domain.events import ChatEvent

__all__ = ["Cursor", "Closed", "Placement", "step", "close_expired", "sort_key", "MESSAGE_BUCKETS",
           "CLOSING_KINDS", "ECHO_MS"]

MESSAGE_BUCKETS = ("user", "agent", "bot", "system", "private")
CLOSING_KINDS = frozenset({"resolve", "terminal"})
REOPENING_OUTCOMES = frozenset({"resolved", "expired"})  # after these, a user message opens a cycle
ECHO_MS = 5_000  # a close from the other format this soon after a close is the same close


class Placement:
    """Where the fold put an event; the worker counts these as verdicts."""

    APPLIED, AFTER_CLOSE, AFTER_TERMINAL, ECHO = "applied", "after_close", "after_terminal", "duplicate"


@dataclass(slots=True)
class Cursor:
    """The fold's running state: the current (or last) cycle, and the chat's group and agent."""

    cycle: int = 0
    open: bool = False
    started_at: int | None = None
    last_at: int | None = None
    first_response_at: int | None = None
    counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0])
    responder_at: int | None = None
    responder_id: str | None = None
    group_at: int | None = None
    group_id: str | None = None
    group_name: str | None = None
    agent_at: int | None = None
    agent_id: str | None = None
    closed_at: int | None = None
    outcome: str | None = None  # of the last close: sticky when terminal
    closer: str | None = None  # format of the event that made the last close; None for expiry

    def copy(self) -> "Cursor":
        duplicate = Cursor(*self.as_list())
        duplicate.counts = list(self.counts)
        return duplicate

    def as_list(self) -> list:
        return [getattr(self, f.name) for f in fields(self)]


@dataclass(frozen=True, slots=True)
class Closed:
    """A cycle that closed: the contact's facts, before its queue name is looked up."""

    cycle: int
    outcome: str
    resolved_by: str
    started_at: int
    first_response_at: int | None
    resolved_at: int
    group_id: str | None
    group_name: str | None
    agent_id: str | None
    counts: tuple[int, ...]


def sort_key(at: int, kind: str, identity: int) -> tuple[int, int, int]:
    """Time order; at equal times a close comes last, so the cycle it closes holds (start, close]."""
    return at, kind in CLOSING_KINDS, identity


def step(cursor: Cursor, event: ChatEvent, expiry_ms: int) -> tuple[list[Closed], str]:
    """Fold the next event (in sort order) into the cursor: the cycles it closed, and its placement."""
    if event.kind in CLOSING_KINDS and _echo(cursor, event):
        _learn_assignment(cursor, event)
        return [], Placement.ECHO
    closed = []
    if cursor.open and event.at > cursor.last_at + expiry_ms:
        closed.append(close_expired(cursor, expiry_ms))
    if not cursor.open:
        if cursor.cycle and not _opens(cursor, event):
            _learn_assignment(cursor, event)
            terminal = cursor.outcome not in REOPENING_OUTCOMES
            return closed, Placement.AFTER_TERMINAL if terminal else Placement.AFTER_CLOSE
        _open_cycle(cursor)
    _fold(cursor, event)
    if event.kind == "resolve":
        closed.append(_close(cursor, "resolved", event.actor, event.at, event.source))
    elif event.kind == "terminal":
        closed.append(_close(cursor, event.status or "closed", event.actor, event.at, event.source))
    return closed, Placement.APPLIED


def close_expired(cursor: Cursor, expiry_ms: int) -> Closed:
    """Close the open cycle as idle: at its newest event time plus the expiry."""
    return _close(cursor, "expired", "system", cursor.last_at + expiry_ms, None)


def _echo(cursor: Cursor, event: ChatEvent) -> bool:
    """The other format's copy of the last close (a Marketplace app and native webhooks both on)."""
    return (cursor.closer is not None and event.source != cursor.closer
            and 0 <= event.at - cursor.closed_at <= ECHO_MS)


def _opens(cursor: Cursor, event: ChatEvent) -> bool:
    """After a close: a reopen always opens; a user message only after a resolution or expiry."""
    if event.kind == "reopen":
        return True
    if cursor.outcome not in REOPENING_OUTCOMES:
        return False
    return event.kind == "message" and event.actor == "user" and event.message_type != "private"


def _open_cycle(cursor: Cursor) -> None:
    cursor.cycle += 1
    cursor.open = True
    cursor.started_at = cursor.last_at = cursor.first_response_at = None
    cursor.counts = [0, 0, 0, 0, 0]
    cursor.responder_at = cursor.responder_id = None


def _fold(cursor: Cursor, event: ChatEvent) -> None:
    at = event.at
    cursor.started_at = at if cursor.started_at is None else min(cursor.started_at, at)
    cursor.last_at = at if cursor.last_at is None else max(cursor.last_at, at)
    _learn_assignment(cursor, event)
    if event.kind != "message":
        return
    bucket = bucket_of(event.actor, event.message_type)
    cursor.counts[bucket] += 1
    if bucket == 1:
        if cursor.first_response_at is None or at < cursor.first_response_at:
            cursor.first_response_at = at
        if event.actor_id is not None and _later(at, event.actor_id, cursor.responder_at, cursor.responder_id):
            cursor.responder_at, cursor.responder_id = at, event.actor_id


def bucket_of(actor: str, message_type: str | None) -> int:
    """Index into MESSAGE_BUCKETS: private notes, system messages, else the actor."""
    if message_type == "private":
        return 4
    if message_type == "system":
        return 3
    return MESSAGE_BUCKETS.index(actor)


def _learn_assignment(cursor: Cursor, event: ChatEvent) -> None:
    """Keep the group and agent set by the latest event time; ties go to the larger id."""
    if event.group_id is not None and _later(event.at, event.group_id, cursor.group_at, cursor.group_id):
        cursor.group_at, cursor.group_id = event.at, event.group_id
        cursor.group_name = event.group_name
    elif event.group_id is not None and event.group_id == cursor.group_id and event.group_name:
        cursor.group_name = event.group_name
    if event.kind != "message" and event.agent_id is not None and _later(
            event.at, event.agent_id, cursor.agent_at, cursor.agent_id):
        cursor.agent_at, cursor.agent_id = event.at, event.agent_id


def _later(at: int, value, known_at: int | None, known_value) -> bool:
    if known_at is None or at > known_at:
        return True
    return at == known_at and str(value) > str(known_value)


def _close(cursor: Cursor, outcome: str, resolved_by: str, at: int, closer: str | None) -> Closed:
    closed = Closed(cycle=cursor.cycle, outcome=outcome, resolved_by=resolved_by,
                    started_at=min(cursor.started_at, at), first_response_at=cursor.first_response_at,
                    resolved_at=at, group_id=cursor.group_id, group_name=cursor.group_name,
                    agent_id=cursor.agent_id or cursor.responder_id, counts=tuple(cursor.counts))
    cursor.open = False
    cursor.closed_at, cursor.outcome, cursor.closer = at, outcome, closer
    return closed
