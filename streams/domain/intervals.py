"""Interval statistics (docs/intervals.md): contacts summed per integration, queue and interval,
restated whenever a contact revision changes them. Pure: the tables are plain mappings.

Why each interval keeps its members (contact id -> the few numbers it contributes) rather than
running sums: a revision must take back exactly what the previous revision added, and
`max_wait_seconds` cannot be subtracted. The figures are summed from the members when the
interval is written; an interval holds one queue's contacts of 15 minutes, a few hundred at most.

Which intervals may hold a contact is read from the states themselves (each lists the
contacts it counts and those that left it, with the revision last applied), so one table is
the whole truth. Every state remembers the offset of the last contacts record that changed
it, and the contacts topic is read in offset order per partition, so a record replayed after
a crash changes only the intervals whose write did not survive: nothing is counted twice, nothing is lost, and the figures and revision
numbers are a function of the contacts topic alone (replaying it from the beginning gives the
same intervals).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterable, MutableMapping

import orjson

from streams.domain.contact import revision_order
from streams.domain.interval_figures import ATTRIBUTIONS, INTERVAL_MINUTES, Member, Totals, interval_start, member_of
from streams.domain.keys import interval_key, split_interval_key
from streams.domain.times import ms_to_time, parse_time

__all__ = ["IntervalState", "IntervalAggregator", "build_interval"]


@dataclass
class IntervalState:
    """One interval's members, its revision (changes so far) and the last contacts offset that changed it.

    `totals` are its running figures, kept in memory beside the members once asked for."""

    revision: int = 0
    offset: int = -1
    members: dict[str, list] = field(default_factory=dict)
    # contact id -> [revision, emitted_at] of the last record applied here, for members and for
    # contacts that left (moved, retracted): an older record arriving later changes nothing
    orders: dict[str, list] = field(default_factory=dict)
    totals: "Totals | None" = field(default=None, compare=False, repr=False)

    def dumps(self) -> bytes:
        return orjson.dumps({"r": self.revision, "o": self.offset, "m": self.members, "w": self.orders})

    @classmethod
    def loads(cls, raw: bytes | None) -> "IntervalState":
        if raw is None:
            return cls()
        data = orjson.loads(raw)
        return cls(data["r"], data["o"], data["m"], data.get("w", {}))

    def put(self, contact: str, member: Member | None) -> bool:
        """Set (or, with None, remove) a contact's part; True when that changed the interval."""
        old = self.members.get(contact)
        if member is None:
            if old is None:
                return False
            del self.members[contact]
        else:
            dumped = member.dump()
            if old == dumped:
                return False
            self.members[contact] = dumped
        if self.totals is not None:
            if old is not None:
                self.totals.add(old, -1)
            if member is not None:
                self.totals.add(dumped, 1)
        return True

    def figures(self, sla_ms: int) -> dict:
        if self.totals is None or self.totals.sla_ms != sla_ms:
            self.totals = Totals(sla_ms, self.members.values())
        return self.totals.figures(self.members.values())


def build_interval(integration: str, queue: str, start_ms: int, minutes: int, attribution: str,
                   state: IntervalState, sla_ms: int, updated_at_ms: int) -> dict:
    """The record written to the intervals topic (schemas/interval.schema.json)."""
    figures_ = state.figures(sla_ms)
    return {"v": 1, "integration": integration, "queue": queue, "interval_start": ms_to_time(start_ms),
            "interval_minutes": minutes, "attribution": attribution, "revision": state.revision,
            "updated_at": ms_to_time(updated_at_ms), **figures_, "group_ids": state.totals.group_ids()}


Emit = Callable[[list[tuple[bytes, bytes]]], Awaitable[None]]


class IntervalAggregator:
    """Applies batches of contacts-topic records to the interval table and emits the intervals
    they changed.

    Which intervals may hold a contact is not stored: it is read from the interval states
    themselves (each lists its members and the contacts that left it), once per queue when
    the queue is first met after a start or a rebalance, and kept in memory. One table is the
    whole truth, so a crash cannot leave an index and the intervals disagreeing, and a batch
    writes one record per interval it changed, not one per contact.

    Order of a batch: the changed intervals are sent (and acknowledged) before their states are
    written, and the writes are acknowledged (`flush`) before the batch counts as done. A crash
    before the writes repeats the same records (same revisions, same figures); a crash after
    some of them leaves those keys ahead, and their offsets make the replay skip them.
    """

    def __init__(self, *, intervals: MutableMapping[bytes, bytes], emit: Emit, minutes: int = 15, attribution: str = "started", sla_seconds: float = 60.0,
                 clock: Callable[[], float], flush: Callable[[], Awaitable[None]] | None = None,
                 retention_ms: int = 35 * 86_400_000, cache_size: int = 4096,
                 on_skip: Callable[[str], None] = lambda reason: None) -> None:
        if minutes not in INTERVAL_MINUTES or attribution not in ATTRIBUTIONS:
            raise ValueError(f"interval of {minutes} min attributed by {attribution!r}")
        self.intervals, self.emit, self.flush = intervals, emit, flush
        self.minutes, self.attribution, self.sla_ms = minutes, attribution, round(sla_seconds * 1000)
        self.clock, self.on_skip, self.retention_ms = clock, on_skip, retention_ms
        self.newest: int | None = None  # the latest interval start seen: the horizon trails it by the retention
        self.written: dict[tuple[str, str], dict[int, dict]] = {}  # (integration, queue) -> start -> record
        # Decoded states of recent intervals, with their running totals: a queue's current
        # interval changes with nearly every batch. Only this aggregator writes the tables, so
        # the copy stays true while the partitions stay here (forget() when they move).
        self._cache: OrderedDict[bytes, IntervalState] = OrderedDict()
        self.cache_size = cache_size
        self._lock = asyncio.Lock()  # a batch reads states, awaits, then writes them: prune must not cut in
        # (integration, queue) -> contact id -> starts of the intervals that list it; built per queue
        self._where: dict[tuple[str, str], dict[str, set[int]]] = {}
        self._keys: dict[tuple[str, str], list[bytes]] | None = None  # the table's keys by queue, read once

    async def process(self, records: Iterable[tuple[bytes | None, bytes, int]]) -> list[dict]:
        """Apply (key, value, offset) records of one contacts partition in offset order; returns the
        interval records emitted."""
        async with self._lock:
            return await self._process(records)

    async def _process(self, records) -> list[dict]:
        try:
            return await self._apply_batch(records)
        except BaseException:
            self.forget()  # the cached states were changed in place and may not have been written
            raise

    async def _apply_batch(self, records) -> list[dict]:
        states: dict[bytes, IntervalState] = {}
        dirty: dict[bytes, tuple[str, str, int]] = {}  # changed figures: written and emitted
        touched: set[bytes] = set()  # changed at all (an order only, too): written
        for _key, value, offset in records:
            contact = self._contact(value)
            if contact is not None:
                self._apply(contact, offset, states, dirty, touched)
        if not touched:
            return []
        now = int(self.clock() * 1000)
        out = [build_interval(integration, queue, start, self.minutes, self.attribution, states[key], self.sla_ms,
                              now) for key, (integration, queue, start) in dirty.items()]
        if out:
            await self.emit([(interval_key(r["integration"], r["queue"], r["interval_start"]), orjson.dumps(r))
                             for r in out])
        for key in touched:
            self.intervals[key] = states[key].dumps()
        self._keep(states)
        if self.flush is not None:
            await self.flush()
        for record in out:
            self.written.setdefault((record["integration"], record["queue"]), {})[
                parse_time(record["interval_start"])] = record
        return out

    def _contact(self, value: bytes) -> dict | None:
        try:
            contact = orjson.loads(value)
        except orjson.JSONDecodeError:
            self.on_skip("invalid_json")
            return None
        if not isinstance(contact, dict) or contact.get("v") != 1 or not contact.get("contact_id") \
                or not contact.get("integration") or not contact.get("queue"):
            self.on_skip("not_a_contact")
            return None
        return contact

    def _apply(self, contact: dict, offset: int, states, dirty, touched) -> None:
        """Apply one record to every interval that lists the contact and to the one it counts in now.

        Each interval takes the records in offset order on its own: one whose offset is at or past
        this record's already has it (a replay after a crash), and one that saw a later revision of
        the contact ignores an older one."""
        integration, queue, contact_id = contact["integration"], contact["queue"], contact["contact_id"]
        member = member_of(contact)
        target = interval_start(contact, self.minutes, self.attribution) if member else None
        if member is not None and target is None:
            self.on_skip("no_time")
            return
        if target is not None:
            if target < self.horizon():
                self.on_skip("too_old")
                return  # its interval's members were forgotten: it can no longer be restated
            self.newest = target if self.newest is None else max(self.newest, target)
        where = self._where_in(integration, queue)
        starts = where.setdefault(contact_id, set())
        candidates = {s for s in starts if s >= self.horizon()} | ({target} if target is not None else set())
        order = list(revision_order(contact))
        older = False
        for start in sorted(candidates):
            key = interval_key(integration, queue, ms_to_time(start))
            state = states.get(key)
            if state is None:
                state = states[key] = self._load(key)
            starts.add(start)
            if state.offset >= offset:
                continue  # this record's change to that interval survived a crash: applied already
            seen = state.orders.get(contact_id)
            if seen is not None and seen > order:
                older = True
                continue  # that interval counted a later revision already
            changed = state.put(contact_id, member if start == target else None)
            if changed:
                state.revision += 1
                dirty[key] = (integration, queue, start)
            if changed or seen != order:
                state.orders[contact_id] = order
                state.offset = offset
                touched.add(key)
        if older:
            self.on_skip("older_revision")

    def _where_in(self, integration: str, queue: str) -> dict[str, set[int]]:
        """Contact id -> the starts of this queue's intervals that list it, read from the table the
        first time the queue is met (after a start or forget())."""
        found = self._where.get((integration, queue))
        if found is not None:
            return found
        if self._keys is None:
            self._keys = {}
            for key in list(self.intervals.keys()):
                name, queue_name, _ = split_interval_key(key)
                self._keys.setdefault((name, queue_name), []).append(key)
        found = self._where[(integration, queue)] = {}
        for key in self._keys.pop((integration, queue), ()):
            start = _start_of(key)
            state = self._cache.get(key) or IntervalState.loads(self.intervals.get(key))
            for contact_id in state.orders.keys() | state.members.keys():
                found.setdefault(contact_id, set()).add(start)
        return found

    def _load(self, key: bytes) -> IntervalState:
        state = self._cache.get(key)
        if state is None:
            return IntervalState.loads(self.intervals.get(key))
        self._cache.move_to_end(key)
        return state

    def _keep(self, states: dict[bytes, IntervalState]) -> None:
        """Cache the batch's states once they are written (a batch that failed leaves the cache as it was)."""
        for key, state in states.items():
            self._cache[key] = state
            self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def forget(self) -> None:
        """Drop what is kept in memory (decoded states, where contacts are): the table's partitions
        are moving (a rebalance), and what another worker writes meanwhile must be read from the
        table when they come back."""
        self._cache.clear()
        self._where.clear()
        self._keys = None

    def horizon(self) -> int:
        """Intervals starting before this are forgotten (and contacts counting in them skipped)."""
        return -1 if self.newest is None else self.newest - self.retention_ms

    async def prune(self) -> int:
        """Forget intervals older than the horizon; returns how many. Their records stay on the intervals topic, final."""
        async with self._lock:
            return self._prune()

    def _prune(self) -> int:
        horizon, dropped = self.horizon(), 0
        if horizon < 0:
            return 0
        for key in [k for k in list(self.intervals.keys()) if _start_of(k) < horizon]:
            del self.intervals[key]
            self._cache.pop(key, None)
            dropped += 1
        if dropped:
            self._where.clear()  # read again from what is left, when each queue is next met
            self._keys = None
        return dropped

    def recent(self, now_ms: int) -> Iterable[tuple[str, dict]]:
        """("current" | "previous", record) of the intervals written since start that hold now or
        the interval before; older ones are forgotten here (the tables keep them)."""
        length = self.minutes * 60_000
        current = now_ms - now_ms % length
        labels = {current: "current", current - length: "previous"}
        for starts in self.written.values():
            for start in [s for s in starts if s < current - length]:
                del starts[start]
            for start, record in starts.items():
                if start in labels:
                    yield labels[start], record




def _start_of(key: bytes) -> int:
    start = parse_time(split_interval_key(key)[2])
    return -1 if start is None else start
