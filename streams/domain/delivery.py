"""Delivering contacts to a WFM that adds up rows: what to post so that its sums equal the final contacts'.

injixo sums every contact row it is sent into 15-minute intervals; a row cannot be updated or
deleted. So what a contact counts there is the sum of the rows delivered for it, and a revision
after delivery is delivered as its difference: the row delivered before, negated, then the new
row (a retraction: the negation alone; an unchanged row: nothing).

What was delivered is kept per *line*: one contact under one queue key (`<integration>/<queue>`).
That is the unit the contacts topic orders: a move to another queue writes the retraction under
the old queue's key and the new revision under the new one, each in its queue's partition, so
each line's records arrive in order in one partition and its delivered row lives there too
(docs/delivery.md).

A batch is written down (an intent, with the rows it posts) before it is posted, and its lines
are recorded as delivered after the WFM answered 2xx. A crash in between leaves the intent: the
sink posts exactly the same rows again, under the same idempotency key, instead of computing new
ones from a state that does not know the first post happened. Pure: no I/O here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import orjson

from streams.domain.contact import UNDEFINED_QUEUE, revision_order
from streams.domain.keys import (batch_of_delivery_key, delivery_batch_key, delivery_line_key, split_contact_key,
                                 split_delivery_line_key)
from streams.domain.times import parse_time

__all__ = ["Row", "row_of", "difference", "Change", "Batch", "Ledger", "Pending"]

Order = tuple[int, str]  # revision_order: (revision, emitted_at)
NEVER: Order = (0, "")


@dataclass(frozen=True)
class Row:
    """One contact-event row as injixo takes it; the duration in integer ms, so negations cancel exactly."""

    queue_identifier: str
    queue_name: str
    timestamp: str
    offered: int
    handled: int
    duration_ms: int

    def negated(self) -> "Row":
        return Row(self.queue_identifier, self.queue_name, self.timestamp, -self.offered, -self.handled,
                   -self.duration_ms)

    def dump(self) -> list:
        return [self.queue_identifier, self.queue_name, self.timestamp, self.offered, self.handled, self.duration_ms]

    @classmethod
    def load(cls, raw: list | None) -> "Row | None":
        return None if raw is None else cls(*raw)

    def to_api(self) -> dict:
        """The element of `data` in POST /external-systems/contact-events."""
        return {"properties": {"offered": self.offered, "handled": self.handled,
                               "duration": self.duration_ms / 1000},
                "queueName": self.queue_name, "queueIdentifier": self.queue_identifier,
                "timestamp": self.timestamp, "channel": "chats"}


def row_of(contact: Mapping, attribution: str = "started") -> Row | None:
    """What a contact record contributes in injixo; None for a retraction.

    The queue identifier is the Freshchat group id: injixo makes a new queue for every new
    identifier and name, and a group id survives a rename. The duration is the handle time, so
    injixo's AHT matches freshstream's intervals (docs/intervals.md): 0 for a chat no agent answered.
    The timestamp is the time the interval statistics count the contact by (start, by default).
    """
    if contact.get("retracted"):
        return None
    queue = contact.get("queue") or UNDEFINED_QUEUE
    identifier = UNDEFINED_QUEUE if queue == UNDEFINED_QUEUE else (contact.get("group_id") or queue)
    handled = bool(contact.get("handled"))
    duration = round(float(contact.get("duration_seconds") or 0) * 1000) if handled else 0
    at = contact.get("resolved_at" if attribution == "resolved" else "started_at") or contact.get("resolved_at")
    return Row(identifier, queue, at, int(bool(contact.get("offered"))), int(handled), duration)


def difference(before: Row | None, after: Row | None) -> list[Row]:
    """The rows that turn what injixo counts for a line from `before` into `after`."""
    if before == after:
        return []
    return ([before.negated()] if before is not None else []) + ([after] if after is not None else [])


@dataclass(frozen=True)
class Change:
    """One line in a batch: from the row delivered before to the row of this revision."""

    line: bytes
    order: Order
    before: Row | None
    after: Row | None
    offset: int  # of the contacts record, which the partition's commit waits for

    @property
    def rows(self) -> list[Row]:
        return difference(self.before, self.after)

    def dump(self) -> list:
        return [self.line.decode(), self.order[0], self.order[1], self.before and self.before.dump(),
                self.after and self.after.dump(), self.offset]

    @classmethod
    def load(cls, raw: list) -> "Change":
        line, revision, emitted_at, before, after, offset = raw
        return cls(line.encode(), (revision, emitted_at), Row.load(before), Row.load(after), offset)


@dataclass(frozen=True)
class Batch:
    """The rows of one request: one integration, one contacts partition (where its intent is kept)."""

    integration: str
    configuration_id: str
    partition: int
    changes: tuple[Change, ...]
    id: str = field(default="")

    def __post_init__(self) -> None:
        if not self.id:
            digest = hashlib.sha256(orjson.dumps([self.integration, self.configuration_id,
                                                  [c.dump()[:5] for c in self.changes]]))
            object.__setattr__(self, "id", digest.hexdigest()[:32])

    @property
    def idempotency_key(self) -> str:
        """The same batch posted again (after a crash or a retry) carries the same key."""
        return f"freshstream-{self.id}"

    @property
    def rows(self) -> list[Row]:
        return [row for change in self.changes for row in change.rows]

    def body(self) -> dict:
        return {"data": [row.to_api() for row in self.rows], "meta": {"integrationConfigurationId": self.configuration_id}}

    def intent(self) -> tuple[bytes, bytes]:
        """The (key, value) written to the delivery state topic before the batch is posted."""
        return delivery_batch_key(self.id), orjson.dumps({
            "v": 1, "integration": self.integration, "configuration_id": self.configuration_id,
            "changes": [c.dump() for c in self.changes]})

    def delivered(self) -> list[tuple[bytes, bytes | None]]:
        """The records written once the WFM took the batch: each line's new state, then the intent's tombstone."""
        return [(c.line, orjson.dumps({"v": 1, "revision": c.order[0], "emitted_at": c.order[1],
                                       "row": c.after and c.after.dump()})) for c in self.changes] + \
            [(delivery_batch_key(self.id), None)]

    @classmethod
    def from_intent(cls, batch_id: str, value: bytes, partition: int) -> "Batch":
        doc = orjson.loads(value)
        return cls(doc["integration"], doc["configuration_id"], partition,
                   tuple(Change.load(c) for c in doc["changes"]), batch_id)


@dataclass
class Pending:
    """The newest record of a line not yet delivered."""

    integration: str
    order: Order
    row: Row | None
    offset: int
    emitted_ms: int


class Ledger:
    """One contacts partition's delivery: what each line delivered, what waits, what is in flight.

    Commits follow `commit_point()`: the lowest offset whose record is not yet delivered (or
    superseded), so a restart re-reads every record that might still have to be posted, and the
    delivered state turns every re-read record that was posted into nothing.
    """

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.delivered: dict[bytes, tuple[Order, Row | None]] = {}
        self.pending: dict[bytes, Pending] = {}
        self.in_flight: dict[bytes, Change] = {}
        self.next_offset: int | None = None  # after the last record observed
        self._intents: dict[str, bytes] = {}

    # -- recovery from the delivery state topic --------------------------------------------

    def restore(self, key: bytes | None, value: bytes | None) -> None:
        """Fold one record of this partition of the delivery state topic (read from its start)."""
        if not key:
            return
        batch_id = batch_of_delivery_key(key)
        if batch_id is not None:
            if value is None:
                self._intents.pop(batch_id, None)
            else:
                self._intents[batch_id] = value
            return
        if value is None:
            self.delivered.pop(key, None)
            return
        doc = orjson.loads(value)
        self.delivered[key] = ((doc["revision"], doc["emitted_at"]), Row.load(doc["row"]))

    def unfinished(self) -> tuple[list[Batch], list[Batch]]:
        """After restore: (batches to post again, batches whose lines were recorded but whose intent
        was not tombstoned). A batch to post again holds its lines in flight until it is delivered."""
        again, done = [], []
        for batch_id, value in self._intents.items():
            batch = Batch.from_intent(batch_id, value, self.partition)
            if all(self.delivered.get(c.line, (NEVER, None))[0] >= c.order for c in batch.changes):
                done.append(batch)
            else:
                again.append(batch)
                self.in_flight.update((c.line, c) for c in batch.changes)
        self._intents.clear()
        return again, done

    # -- reading contacts --------------------------------------------------------------------

    def observe(self, offset: int, key: bytes | None, contact: Mapping, attribution: str) -> bool:
        """Take one contacts record; True when it is waiting to be delivered."""
        self.next_offset = offset + 1
        line = delivery_line_key(key or b"", contact["contact_id"])
        order = revision_order(contact)
        known = max(self.delivered.get(line, (NEVER, None))[0],
                    self.in_flight[line].order if line in self.in_flight else NEVER,
                    self.pending[line].order if line in self.pending else NEVER)
        if order <= known:
            return False  # a repeat, a stale revision, or one delivered before a restart
        self.pending[line] = Pending(split_contact_key(key)[0], order, row_of(contact, attribution), offset,
                                     parse_time(contact.get("emitted_at")) or 0)
        return True

    def skip(self, offset: int) -> None:
        """A record that is not for delivery (another integration's, unreadable): only the position moves."""
        self.next_offset = offset + 1

    def settled(self, integration: str, now_ms: int, settle_ms: int, limit: int | None = None) -> list[bytes]:
        """The lines of one integration that went `settle_ms` without a revision and are not in flight,
        oldest read first; at most `limit` (a batch's worth: a backlog is not scanned whole per batch)."""
        lines = []
        for line, p in self.pending.items():
            if p.integration == integration and p.emitted_ms + settle_ms <= now_ms and line not in self.in_flight:
                lines.append(line)
                if limit is not None and len(lines) >= limit:
                    break
        return lines

    def take(self, integration: str, configuration_id: str, lines: Iterable[bytes], max_rows: int) -> Batch | None:
        """A batch of up to `max_rows` rows from these settled lines, put in flight; lines whose row did
        not change are settled at once, without a request. None when nothing is left to post."""
        changes, rows = [], 0
        for line in lines:
            pending = self.pending[line]
            order, before = self.delivered.get(line, (NEVER, None))
            change = Change(line, pending.order, before, pending.row, pending.offset)
            n = len(change.rows)
            if n == 0:
                self.delivered[line] = (pending.order, before)
                del self.pending[line]
                continue
            if rows + n > max_rows and changes:
                break
            changes.append(change)
            rows += n
            del self.pending[line]
            self.in_flight[line] = change
        if not changes:
            return None
        return Batch(integration, configuration_id, self.partition, tuple(changes))

    def complete(self, batch: Batch) -> None:
        """The WFM took the batch and its lines are recorded: they count as delivered."""
        for change in batch.changes:
            self.delivered[change.line] = (change.order, change.after)
            if self.in_flight.get(change.line) == change:
                del self.in_flight[change.line]

    def commit_point(self) -> int | None:
        """The offset to commit: nothing below it still needs delivering."""
        waiting = [p.offset for p in self.pending.values()] + [c.offset for c in self.in_flight.values()]
        if waiting:
            return min(waiting)
        return self.next_offset

    def backlog(self) -> dict[str, tuple[int, int | None]]:
        """Per integration: (contacts read but not delivered, emitted_at ms of the oldest)."""
        out: dict[str, tuple[int, int | None]] = {}
        for line, p in self.pending.items():
            count, oldest = out.get(p.integration, (0, None))
            out[p.integration] = (count + 1, p.emitted_ms if oldest is None else min(oldest, p.emitted_ms))
        for line, c in self.in_flight.items():
            integration = split_contact_key(split_delivery_line_key(line)[0])[0]
            count, oldest = out.get(integration, (0, None))
            emitted = parse_time(c.order[1]) or 0
            out[integration] = (count + 1, emitted if oldest is None else min(oldest, emitted))
        return out
