"""One chat's state, and what a new event changes in its contacts (docs/contacts.md §2, §4).

`apply(state, event) -> (state, changes, verdict)`. Pure and deterministic: the state
holds the chat's distinct events (the *log*, in time order) since its frozen point, so
the contacts are always the fold of that set in time order (streams/domain/cycles.py), however
the events arrived. Events in order (nearly all of them) cost one fold step from the
cached cursor; an event that lands before the end re-folds the log. Each cycle's emitted
revision and a digest of its facts are kept, so a re-fold yields exactly the contacts
that changed (`Change`), and a cycle that no longer exists yields a retraction.

Bounded: the log is cut at MAX_LOG entries (the older half is folded into the frozen
base); a chat closed for the expiry becomes a tombstone (its base alone) so that its
cycle numbering continues; events at or before the frozen point are `late`.
"""

from __future__ import annotations

import hashlib
from bisect import insort
from dataclasses import dataclass, field, replace

import orjson

from streams.domain.cycles import (Closed, Cursor, MESSAGE_BUCKETS, Placement, close_expired, sort_key,
                            step)
from streams.domain.events import ChatEvent

__all__ = ["ChatState", "Change", "Closed", "Outcome", "apply", "expire", "digest", "closed_cycles",
           "MESSAGE_BUCKETS", "MAX_LOG"]

MAX_LOG = 512  # events kept per chat: far above a real chat's, a bound on memory
_FORMAT = "c2"  # first element of a serialised state; the format before it was a bare list
_KINDS = ("message", "assign", "resolve", "reopen", "terminal", "open")
_ACTORS = ("user", "agent", "bot", "system")
_TYPES = ("normal", "private", "system")
_SOURCES = ("webhook", "app")


class Outcome:
    """What apply() did with an event; the worker counts these as verdicts."""

    APPLIED, DUPLICATE, LATE = Placement.APPLIED, "duplicate", "late"
    AFTER_CLOSE, AFTER_TERMINAL = Placement.AFTER_CLOSE, Placement.AFTER_TERMINAL
    REVISED, FUTURE_TIME = "revised", "future_time"


@dataclass(frozen=True, slots=True)
class Change:
    """A cycle whose contact must be (re-)emitted: its new facts, or None when it no longer exists."""

    cycle: int
    closed: Closed | None


@dataclass(slots=True)
class ChatState:
    """The log since the frozen point, the cursor after it, and what was emitted per cycle."""

    head: Cursor = field(default_factory=Cursor)
    log: list[list] = field(default_factory=list)  # [at, code, identity, group, agent, extra], sorted
    base: Cursor | None = None  # the fold of every event at or before frozen_until
    frozen_until: int | None = None
    emitted: dict[int, list] = field(default_factory=dict)  # cycle -> [revision, digest, queue]
    expired_by: int | None = None  # the watermark at which the expiry scan closed the head's cycle
    names: dict[str, str] = field(default_factory=dict)  # group names this chat's events carried
    unsent: dict[int, list] = field(default_factory=dict)  # cycles written ahead of emission: [[queue, retraction revision], ...]
    writer: str | None = None  # the worker incarnation that wrote `unsent`

    def dumps(self) -> bytes:
        """Compact bytes, copied: orjson's own buffer keeps ~4 KiB allocated per value it returns."""
        emitted = [[cycle, *entry] for cycle, entry in self.emitted.items()]
        base = _trimmed(self.base.as_list()) if self.base else None
        if base is not None and not self.log and self.base == self.head:
            base = 1  # a tombstone: the base is the head
        doc = [_FORMAT, _trimmed(self.head.as_list()), self.log, base,
               self.frozen_until, emitted, self.expired_by, self.names,
               [[cycle, marks] for cycle, marks in self.unsent.items()], self.writer if self.unsent else None]
        while doc[-1] in (None, [], {}):
            doc.pop()
        return bytes(memoryview(orjson.dumps(doc)))

    @classmethod
    def loads(cls, data: bytes) -> "ChatState":
        doc = orjson.loads(data)
        if not doc or doc[0] != _FORMAT:
            return _from_first_format(doc)
        doc += [None] * (10 - len(doc))
        _, head, log, base, frozen_until, emitted, expired_by, names, unsent, writer = doc
        head = Cursor(*head)
        base = head.copy() if base == 1 else Cursor(*base) if base else None
        return cls(head, log or [], base, frozen_until,
                   {entry[0]: entry[1:] for entry in emitted or ()}, expired_by, names or {},
                   {cycle: marks for cycle, marks in unsent or ()}, writer)

    @property
    def open(self) -> bool:
        return self.head.open

    def first_open_cycle(self) -> int:
        """The lowest cycle number the log can still change."""
        base = self.base
        if base is None:
            return 1
        return base.cycle if base.open else base.cycle + 1


def apply(state: ChatState | None, event: ChatEvent, expiry_ms: int) -> tuple[ChatState, list[Change], str]:
    """Add one event to a chat: the new state, the contacts to (re-)emit, and a verdict."""
    state = state or ChatState()
    if state.frozen_until is not None and event.at <= state.frozen_until:
        return state, [], Outcome.LATE
    identity = event.identity()
    if any(entry[2] == identity for entry in state.log):
        return state, [], Outcome.DUPLICATE
    event = _with_known_name(state, event)
    entry = _entry(event, identity)
    if _appends(state, entry):
        state.log.append(entry)
        closed, placement = step(state.head, event, expiry_ms)
        changes = _diff(state, closed, None)
    else:
        insort(state.log, entry, key=_entry_key)
        placement, changes = _refold(state, expiry_ms, identity)
    if len(state.log) > MAX_LOG:
        _freeze_older_half(state, expiry_ms)
    revised = any(change.cycle in state.emitted and state.emitted[change.cycle][0] > 0 for change in changes)
    return state, changes, Outcome.REVISED if revised else placement


def expire(state: ChatState, watermark: int, expiry_ms: int,
           tombstone_ms: int) -> tuple[ChatState | None, list[Change], bool]:
    """The expiry scan: close an idle cycle, tombstone a long-closed chat, drop an old tombstone.

    Returns the state (None: delete it), the contacts to emit, and whether it changed."""
    head = state.head
    if head.open and head.last_at + expiry_ms < watermark:
        state.expired_by = watermark
        return state, _diff(state, [close_expired(head, expiry_ms)], None), True
    if head.open:
        return state, [], False
    newest = max(state.log[-1][0] if state.log else 0, head.closed_at or 0)
    if state.log and newest + expiry_ms < watermark:
        _tombstone(state, newest)
        return state, [], True
    if not state.log and (state.frozen_until or 0) + tombstone_ms < watermark:
        return None, [], True
    return state, [], False


def closed_cycles(state: ChatState, expiry_ms: int) -> dict[int, Closed]:
    """The facts of every cycle the log can still change, by cycle number (the state is not touched)."""
    return {cycle.cycle: cycle for cycle in _fold_log(state, expiry_ms, None)[1]}


def digest(closed: Closed) -> int:
    """A stable fingerprint of what a contact says (the group's name is looked up at emission)."""
    facts = [closed.cycle, closed.outcome, closed.resolved_by, closed.started_at, closed.first_response_at,
             closed.resolved_at, closed.group_id, closed.agent_id, closed.counts]
    return int.from_bytes(hashlib.blake2b(orjson.dumps(facts), digest_size=6).digest(), "big")


def _with_known_name(state: ChatState, event: ChatEvent) -> ChatEvent:
    """Record a group name the event carries; give it one this chat already learnt.

    So a fold step and a re-fold, which reads names from `state.names`, agree."""
    if event.group_id is None:
        return event
    if event.group_name:
        state.names[event.group_id] = event.group_name
        return event
    known = state.names.get(event.group_id)
    return replace(event, group_name=known) if known else event


def _appends(state: ChatState, entry: list) -> bool:
    """True when one step from the cached cursor equals a re-fold: the event sorts last, and
    it is not older than a close the expiry scan made (which a later event could undo)."""
    if state.log and _entry_key(entry) <= _entry_key(state.log[-1]):
        return False
    head = state.head
    return state.expired_by is None or head.closed_at is None or entry[0] > head.closed_at


def _refold(state: ChatState, expiry_ms: int, watch: int | None) -> tuple[str, list[Change]]:
    """Fold the whole log again from the base; the placement of event `watch` and what changed."""
    state.head, closed, placement = _fold_log(state, expiry_ms, watch)
    return placement, _diff(state, closed, state.first_open_cycle())


def _fold_log(state: ChatState, expiry_ms: int, watch: int | None) -> tuple[Cursor, list[Closed], str]:
    """The cursor after the log, the cycles closed in it, and where event `watch` went."""
    cursor = state.base.copy() if state.base else Cursor()
    closed, placement = [], Placement.APPLIED
    for entry in state.log:
        out, where = step(cursor, _event(entry, state.names), expiry_ms)
        closed += out
        if entry[2] == watch:
            placement = where
    if cursor.open and state.expired_by is not None and cursor.last_at + expiry_ms < state.expired_by:
        closed.append(close_expired(cursor, expiry_ms))
    return cursor, closed, placement


def _diff(state: ChatState, closed: list[Closed], first: int | None) -> list[Change]:
    """Closed cycles whose facts differ from what was emitted; with `first`, a whole re-fold:
    emitted cycles from `first` on that the fold no longer closes are retracted."""
    changes = []
    for cycle in closed:
        entry = state.emitted.get(cycle.cycle)
        if entry is None or entry[1] != digest(cycle):
            changes.append(Change(cycle.cycle, cycle))
    if first is not None:
        present = {cycle.cycle for cycle in closed}
        changes += [Change(number, None) for number, entry in sorted(state.emitted.items())
                    if number >= first and number not in present and entry[1] is not None]
    return changes


def _freeze_older_half(state: ChatState, expiry_ms: int) -> None:
    """Fold the older half of the log into the base; events at or before its end become late."""
    cut = len(state.log) // 2
    while cut < len(state.log) and state.log[cut][0] == state.log[cut - 1][0]:
        cut += 1
    cursor = state.base.copy() if state.base else Cursor()
    for entry in state.log[:cut]:
        step(cursor, _event(entry, state.names), expiry_ms)
    state.base, state.frozen_until = cursor, state.log[cut - 1][0]
    del state.log[:cut]
    first = state.first_open_cycle()
    state.emitted = {number: entry for number, entry in state.emitted.items() if number >= first}


def _tombstone(state: ChatState, newest: int) -> None:
    """Keep only what continues the chat: its cursor (cycle number, last close, group, agent)."""
    head = state.head
    head.started_at = head.last_at = head.first_response_at = head.responder_at = head.responder_id = None
    head.counts = [0, 0, 0, 0, 0]  # a closed cursor's cycle figures are reset when the next cycle opens
    state.base = head.copy()
    state.frozen_until = max(newest, state.frozen_until or 0)
    state.log, state.emitted, state.expired_by, state.names, state.unsent = [], {}, None, {}, {}


def _entry(event: ChatEvent, identity: int) -> list:
    """The event as the log keeps it: only what the fold reads."""
    kind = _KINDS.index(event.kind)
    message_type = event.message_type if event.message_type in _TYPES else "normal"
    code = kind * 100 + _ACTORS.index(event.actor) * 10 + _TYPES.index(message_type) * 2 + (event.source == "app")
    extra = event.status if event.kind == "terminal" else (
        event.actor_id if event.kind == "message" and event.actor == "agent" else None)
    entry = [event.at, code, identity, event.group_id, event.agent_id, extra]
    while entry[-1] is None:
        entry.pop()
    return entry


def _trimmed(values: list) -> list:
    """Without trailing nulls: the cursor's defaults fill them in again."""
    while values and values[-1] is None:
        values.pop()
    return values


def _entry_key(entry: list) -> tuple[int, int, int]:
    return sort_key(entry[0], _KINDS[entry[1] // 100], entry[2])


def _event(entry: list, names: dict[str, str]) -> ChatEvent:
    at, code, _, group, agent, extra = entry + [None] * (6 - len(entry))
    kind, actor = _KINDS[code // 100], _ACTORS[code // 10 % 10]
    return ChatEvent(integration="", conversation_id="", kind=kind, at=at, actor=actor,
                     message_type=_TYPES[code % 10 // 2] if kind == "message" else None,
                     actor_id=extra if kind == "message" else None, group_id=group,
                     group_name=names.get(group) if group else None, agent_id=agent,
                     status=extra if kind == "terminal" else None, source=_SOURCES[code % 2])


def _from_first_format(doc: list) -> ChatState:
    """A state written before revisions existed: its cycle becomes the frozen base, so the
    numbering continues and what it already emitted is never emitted again."""
    (cycle, is_open, started_at, last_at, first_response_at, counts, responder_at, responder_id,
     group_at, group_id, group_name, agent_at, agent_id, closed_at) = doc[:14]
    cursor = Cursor(cycle, is_open, started_at, last_at, first_response_at, counts, responder_at, responder_id,
                    group_at, group_id, group_name, agent_at, agent_id, closed_at,
                    None if is_open else "resolved", None)
    return ChatState(head=cursor.copy(), base=cursor, frozen_until=max(last_at or 0, closed_at or 0))

