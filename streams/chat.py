"""The chat state machine (docs/contacts.md §2): `apply(state, event) -> (state, closed, verdict)`.

Pure and deterministic: the same events in any order before a close give the same
contact, because every field is a min/max/count over event times, never arrival order.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import orjson

from streams.events import ChatEvent

__all__ = ["ChatState", "Closed", "Outcome", "apply", "expire", "MESSAGE_BUCKETS"]

MESSAGE_BUCKETS = ("user", "agent", "bot", "system", "private")
_SEEN_LIMIT = 256  # identities kept per chat: far above a real chat, a bound on memory


@dataclass(slots=True)
class ChatState:
    """Everything kept about one chat between events; serialised compactly for the table."""

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
    seen: list[int] = field(default_factory=list)
    prev_seen: list[int] = field(default_factory=list)

    def dumps(self) -> bytes:
        """Compact bytes, copied: orjson's own buffer keeps ~4 KiB allocated per value it returns."""
        return bytes(memoryview(orjson.dumps([getattr(self, f.name) for f in fields(self)])))

    @classmethod
    def loads(cls, data: bytes) -> "ChatState":
        return cls(*orjson.loads(data))


@dataclass(frozen=True, slots=True)
class Closed:
    """A cycle that just closed: the contact's facts, before its queue name is looked up."""

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


class Outcome:
    """What apply() did with an event; the worker counts these."""

    APPLIED, DUPLICATE, LATE, AFTER_CLOSE = "applied", "duplicate", "late", "after_close"


def apply(state: ChatState | None, event: ChatEvent, expiry_ms: int) -> tuple[ChatState, list[Closed], str]:
    """Fold one event into a chat; returns the new state, the cycles it closed, and a verdict."""
    state = state or ChatState()
    identity = event.identity()
    if identity in state.seen or identity in state.prev_seen:
        return state, [], Outcome.DUPLICATE
    closed = []
    if state.open and event.at > state.last_at + expiry_ms:
        closed.append(_close(state, "expired", "system", state.last_at + expiry_ms))
    if not state.open:
        verdict = _closed_verdict(state, event)
        if verdict is not None:
            if verdict == Outcome.AFTER_CLOSE:
                _learn_assignment(state, event)
            return state, closed, verdict
        _open_cycle(state)
    _remember(state, identity)
    _fold(state, event)
    if event.kind == "resolve":
        closed.append(_close(state, "resolved", event.actor, event.at))
    elif event.kind == "terminal":
        closed.append(_close(state, event.status or "closed", event.actor, event.at))
    return state, closed, Outcome.APPLIED


def expire(state: ChatState, watermark: int, expiry_ms: int) -> tuple[ChatState | None, list[Closed]]:
    """Close an idle open cycle; forget a chat closed longer than the expiry (None = delete)."""
    if state.open and state.last_at + expiry_ms < watermark:
        return state, [_close(state, "expired", "system", state.last_at + expiry_ms)]
    if not state.open and state.closed_at is not None and state.closed_at + expiry_ms < watermark:
        return None, []
    return state, []


def _closed_verdict(state: ChatState, event: ChatEvent) -> str | None:
    """None when the event opens a new cycle, else why it does not."""
    if state.closed_at is None:
        return None
    if event.at <= state.closed_at:
        return Outcome.LATE
    opens = event.kind == "reopen" or (
        event.kind == "message" and event.actor == "user" and event.message_type != "private")
    return None if opens else Outcome.AFTER_CLOSE


def _open_cycle(state: ChatState) -> None:
    state.cycle += 1
    state.open = True
    state.started_at = state.last_at = state.first_response_at = None
    state.counts = [0, 0, 0, 0, 0]
    state.responder_at = state.responder_id = None
    state.prev_seen, state.seen = state.seen, []


def _remember(state: ChatState, identity: int) -> None:
    state.seen.append(identity)
    if len(state.seen) > _SEEN_LIMIT:
        del state.seen[0]


def _fold(state: ChatState, event: ChatEvent) -> None:
    at = event.at
    state.started_at = at if state.started_at is None else min(state.started_at, at)
    state.last_at = at if state.last_at is None else max(state.last_at, at)
    _learn_assignment(state, event)
    if event.kind != "message":
        return
    bucket = _bucket(event)
    state.counts[bucket] += 1
    if bucket == 1:
        if state.first_response_at is None or at < state.first_response_at:
            state.first_response_at = at
        if event.actor_id is not None and _later(at, event.actor_id, state.responder_at, state.responder_id):
            state.responder_at, state.responder_id = at, event.actor_id


def _bucket(event: ChatEvent) -> int:
    if event.message_type == "private":
        return 4
    if event.message_type == "system":
        return 3
    return MESSAGE_BUCKETS.index(event.actor)


def _learn_assignment(state: ChatState, event: ChatEvent) -> None:
    """Keep the group and agent set by the latest event time, whatever the arrival order."""
    if event.group_id is not None and _later(event.at, event.group_id, state.group_at, state.group_id):
        state.group_at, state.group_id = event.at, event.group_id
        state.group_name = event.group_name
    elif event.group_id is not None and event.group_id == state.group_id and event.group_name:
        state.group_name = event.group_name
    if event.kind != "message" and event.agent_id is not None and _later(
            event.at, event.agent_id, state.agent_at, state.agent_id):
        state.agent_at, state.agent_id = event.at, event.agent_id


def _later(at: int, value, known_at: int | None, known_value) -> bool:
    if known_at is None or at > known_at:
        return True
    return at == known_at and str(value) > str(known_value)


def _close(state: ChatState, outcome: str, resolved_by: str, at: int) -> Closed:
    closed = Closed(cycle=state.cycle, outcome=outcome, resolved_by=resolved_by,
                    started_at=min(state.started_at, at), first_response_at=state.first_response_at,
                    resolved_at=at, group_id=state.group_id, group_name=state.group_name,
                    agent_id=state.agent_id or state.responder_id, counts=tuple(state.counts))
    state.open = False
    state.closed_at = at
    return closed
