"""Which CSV file a contact or an interval belongs in, what its row says, and when a file is due
(docs/delivery.md, CSV files). Pure: the sink reads and writes the files, this decides their content.

A file holds one integration's rows of one period of `--rotate` minutes. Rows are keyed (a
contact by its contact_id, an interval by queue and start) and ordered as the topics order them
(revision, then emitted_at or updated_at), so a record that is not newer than what a file holds
changes nothing, and a fold over any order of the records, with any repeats, ends at the same
files. The files themselves are the memory across restarts: `seed` takes what a file found on
disk holds, `RowFiles` loads a file's rows back (through the `load` it is given) before it
changes the first of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from streams.domain.contact import UNDEFINED_QUEUE, revision_order
from streams.domain.interval_figures import interval_start
from streams.domain.times import parse_time

__all__ = ["CONTACT_COLUMNS", "INTERVAL_COLUMNS", "MESSAGE_COLUMNS", "queue_identifier", "contact_cells",
           "contact_file_start", "interval_cells", "interval_file_start", "period_start", "cells_key",
           "cells_order", "contact_change", "interval_change", "RowFiles", "FileKey"]

MESSAGE_COLUMNS = ("messages_user", "messages_agent", "messages_bot", "messages_system", "messages_private")
# The contact's fields (docs/contacts.md §3) as columns; queue_identifier is a WFM's stable queue key.
CONTACT_COLUMNS = ("contact_id", "revision", "integration", "conversation_id", "cycle", "queue", "queue_identifier",
                   "group_id", "agent_id", "outcome", "resolved_by", "started_at", "first_response_at",
                   "resolved_at", "offered", "handled", "wait_seconds", "duration_seconds", *MESSAGE_COLUMNS,
                   "emitted_at")
# The interval record's fields (schemas/interval.schema.json) but `v`, with queue_identifier after the
# queue; outcomes as `name=count` pairs and group_ids separated by spaces, so the columns never change.
INTERVAL_COLUMNS = ("integration", "queue", "queue_identifier", "interval_start", "interval_minutes", "attribution",
                    "revision", "updated_at", "contacts", "offered", "handled", "unanswered",
                    "handle_seconds_total", "aht_seconds", "answer_seconds_total", "asa_seconds",
                    "max_wait_seconds", "sla_seconds", "within_sla", "service_level", "expired", "outcomes",
                    "group_ids")

FileKey = tuple[str, int]  # (integration, period start in epoch ms)


def queue_identifier(queue: str, group_ids: Iterable[str | None]) -> str:
    """A queue's key for a WFM, stable where group names are renamed: its Freshchat group id when
    exactly one is known, Undefined_Queue for that queue, otherwise the queue's name."""
    if queue == UNDEFINED_QUEUE:
        return UNDEFINED_QUEUE
    groups = {group for group in group_ids if group}
    return groups.pop() if len(groups) == 1 else queue


def _cell(value) -> str:
    """JSON's spelling of a value (true, 60.0), empty for null: what the topic said, not Python's repr."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def contact_cells(contact: Mapping) -> list[str]:
    """A live contact's row, in CONTACT_COLUMNS order."""
    messages = contact.get("messages") or {}
    values = {**contact, "revision": revision_order(contact)[0], "queue_identifier": queue_identifier(contact["queue"], [contact.get("group_id")]),
              **{name: messages.get(name.removeprefix("messages_")) for name in MESSAGE_COLUMNS}}
    return [_cell(values.get(name)) for name in CONTACT_COLUMNS]


def interval_cells(record: Mapping) -> list[str]:
    """An interval record's row, in INTERVAL_COLUMNS order."""
    outcomes = " ".join(f"{name}={count}" for name, count in sorted((record.get("outcomes") or {}).items()))
    groups = record.get("group_ids") or []
    values = {**record, "queue_identifier": queue_identifier(record["queue"], groups), "outcomes": outcomes,
              "group_ids": " ".join(groups)}
    return [_cell(values.get(name)) for name in INTERVAL_COLUMNS]


def period_start(ms: int, rotate_minutes: int) -> int:
    """The start of the file period (UTC, aligned to the hour) that holds the moment `ms`."""
    return ms - ms % (rotate_minutes * 60_000)


def contact_file_start(contact: Mapping, rotate_minutes: int, attribution: str) -> int | None:
    """The period a contact's file covers: the one its cycle started in (or was resolved in), as the
    interval statistics count it; None without that time."""
    return interval_start(contact, rotate_minutes, attribution)


def interval_file_start(record: Mapping, rotate_minutes: int) -> int | None:
    """The period whose file holds an interval row: the one its start falls in."""
    start = parse_time(record.get("interval_start"))
    return None if start is None else period_start(start, rotate_minutes)


def contact_change(contact: Mapping, rotate_minutes: int, attribution: str):
    """What a contact record asks of RowFiles.put, as (key, order, file, cells): a retraction takes
    the contact out of every file; None for a live contact without the time it is attributed by."""
    key, order = contact["contact_id"], revision_order(contact)
    if contact.get("retracted"):
        return key, order, None, None
    start = contact_file_start(contact, rotate_minutes, attribution)
    if start is None:
        return None
    return key, order, (contact["integration"], start), contact_cells(contact)


def interval_change(record: Mapping, rotate_minutes: int):
    """What an interval record asks of RowFiles.put; None without a readable interval_start."""
    start = interval_file_start(record, rotate_minutes)
    if start is None:
        return None
    key = (record["integration"], record["queue"], record["interval_start"])
    return key, (record["revision"], record["updated_at"]), (record["integration"], start), interval_cells(record)


_CONTACT_AT = {name: CONTACT_COLUMNS.index(name) for name in ("contact_id", "revision", "emitted_at", "started_at")}
_INTERVAL_AT = {name: INTERVAL_COLUMNS.index(name)
                for name in ("integration", "queue", "interval_start", "revision", "updated_at")}


def cells_key(kind: str, cells: list[str]):
    """The row key of a row read back from a file: contact_id, or (integration, queue, interval_start)."""
    if kind == "contacts":
        return cells[_CONTACT_AT["contact_id"]]
    return tuple(cells[_INTERVAL_AT[name]] for name in ("integration", "queue", "interval_start"))


def cells_order(kind: str, cells: list[str]) -> tuple[int, str]:
    """The order of a row read back: (revision, emitted_at or updated_at), as on the topic."""
    at = _CONTACT_AT if kind == "contacts" else _INTERVAL_AT
    return int(cells[at["revision"]]), cells[at["emitted_at" if kind == "contacts" else "updated_at"]]


def _sort_key(kind: str, cells: list[str]) -> tuple:
    """Rows in a file: contacts by start then id, intervals by queue then start; the same files byte for byte."""
    if kind == "contacts":
        return cells[_CONTACT_AT["started_at"]], cells[_CONTACT_AT["contact_id"]]
    return cells[_INTERVAL_AT["queue"]], cells[_INTERVAL_AT["interval_start"]]


@dataclass
class _Known:
    file: FileKey | None  # None: in no file (retracted, or gone from the compacted topic)
    order: tuple[int, str]


@dataclass
class _Pending:
    rows: dict  # row key -> cells: what the file held when first touched, then the changes
    changed: float  # monotonic seconds of the last change
    holds: dict = field(default_factory=dict)  # source partition -> lowest offset whose change is not on disk


class RowFiles:
    """One kind of file (contacts or intervals): which file each row is in, and the files to write.

    `put` is the fold: a row goes to its file at a higher order only, and leaves the file it was
    in (a contact whose start moved, or retracted). A file touched by a change is pending until
    written; it holds back, per source partition, the lowest offset that changed it, so a
    consumer commits only what is on disk.
    """

    def __init__(self, kind: str, rotate_minutes: int, load: Callable[[FileKey], list[list[str]]]) -> None:
        self.kind, self.period_ms, self._load = kind, rotate_minutes * 60_000, load
        self.index: dict = {}
        self.pending: dict[FileKey, _Pending] = {}

    def seed(self, file: FileKey, rows: Iterable[list[str]], now: float) -> None:
        """Learn what a file on disk holds. A row found in two files (a stop between writing the file
        it moved to and the one it left) stays in the newer; the other is written again without it."""
        for cells in rows:
            key, order = cells_key(self.kind, cells), cells_order(self.kind, cells)
            known = self.index.get(key)
            if known is None:
                self.index[key] = _Known(file, order)
                continue
            if order > known.order:
                loser, self.index[key] = known.file, _Known(file, order)
            else:
                loser = file
            if loser is not None and loser != self.index[key].file:
                self._touch(loser, now, None)

    def put(self, key, order: tuple[int, str], file: FileKey | None, cells: list[str] | None, now: float,
            source=None) -> bool:
        """Fold one record: `file` None and `cells` None for a row that no longer exists. False when the
        record is not newer than what is known, and changes nothing."""
        known = self.index.get(key)
        if known is not None and order <= known.order:
            return False
        if known is not None and known.file is not None and known.file != file:
            self._touch(known.file, now, source)
        self.index[key] = _Known(file, order)
        if file is not None:
            self._touch(file, now, source)[key] = cells
        return True

    def _touch(self, file: FileKey, now: float, source) -> dict:
        pending = self.pending.get(file)
        if pending is None:
            loaded = {cells_key(self.kind, cells): cells for cells in self._load(file)}
            pending = self.pending[file] = _Pending(loaded, now)
        pending.changed = now
        if source is not None:
            partition, offset = source
            pending.holds[partition] = min(offset, pending.holds.get(partition, offset))
        return pending.rows

    def due(self, now_ms: int, now: float, settle: float) -> list[FileKey]:
        """The pending files whose period has ended and that went `settle` seconds without a change."""
        return sorted(file for file, pending in self.pending.items()
                      if file[1] + self.period_ms <= now_ms and now - pending.changed >= settle)

    def content(self, file: FileKey) -> list[list[str]]:
        """The rows the file is to hold: each row whose newest record put it here, sorted."""
        rows = [cells for key, cells in self.pending[file].rows.items()
                if (known := self.index.get(key)) is not None and known.file == file]
        return sorted(rows, key=lambda cells: _sort_key(self.kind, cells))

    def written(self, file: FileKey) -> None:
        """The file is on disk: forget its rows and what it held back."""
        self.pending.pop(file, None)

    def holds(self) -> dict:
        """Per source partition, the lowest offset whose change is not on disk yet."""
        held: dict = {}
        for pending in self.pending.values():
            for partition, offset in pending.holds.items():
                held[partition] = min(offset, held.get(partition, offset))
        return held
