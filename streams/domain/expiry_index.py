"""Which chats the expiry scan must look at, and the open-chat census, kept as chats change.

The scan used to load every chat state every minute, holding the processing lock: at 350k
retained chats that is seconds of stall, to find the few that expire. A chat's state says
when the scan will next have something to do with it (`due_at`: its open cycle's last event
plus the expiry, its last close plus the expiry for a tombstone, its frozen point plus the
tombstone time for forgetting); the index files each chat under the minute it falls due, per
partition (each partition has its own event-time watermark), so a scan loads only the chats
whose minute the watermark has passed. The census (open chats per group, and the oldest
start) is counted the same way, by the change a write makes, so publishing it reads a few
counters instead of every state.

What the index holds is derived from the states, never stored: the processor rebuilds it
with one pass over the table after recovery and after each rebalance, and moves a chat when
it writes the chat (from what the state said when it was loaded to what it says now). Pure.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from streams.domain.chat import ChatState
from streams.domain.contact import UNDEFINED_QUEUE
from streams.domain.keys import split_chat_key

__all__ = ["ExpiryIndex", "Entry", "due_at"]

BUCKET_MS = 60_000

# (due bucket, census key or None, start minute or None): what a state files a chat under
Entry = tuple[int, tuple | None, int | None]


def due_at(state: ChatState, expiry_ms: int, tombstone_ms: int) -> int:
    """The event time after which `expire` may change this state (it changes nothing before)."""
    head = state.head
    if head.open:
        return (head.last_at or 0) + expiry_ms
    if state.log:
        return max(state.log[-1][0], head.closed_at or 0) + expiry_ms
    return (state.frozen_until or 0) + tombstone_ms


class ExpiryIndex:
    """Chats by partition and due minute, and open chats counted by group and by start minute."""

    def __init__(self, expiry_ms: int, tombstone_ms: int) -> None:
        self.expiry_ms, self.tombstone_ms = expiry_ms, tombstone_ms
        self._wheels: dict[int, dict[int, set[bytes]]] = {}
        self._open: dict[int, Counter] = {}  # partition -> Counter[(integration, group_id, group_name)]
        self._starts: dict[int, Counter] = {}  # partition -> Counter[start minute]
        self._keys: dict[tuple, tuple] = {}  # census keys interned: one tuple per group, not per chat

    def entry(self, chat: bytes, state: ChatState | None) -> Entry | None:
        """Where a chat in this state is filed; None for no state."""
        if state is None:
            return None
        head = state.head
        census = start = None
        if head.open:
            key = (split_chat_key(chat)[0], head.group_id, head.group_name)
            census = self._keys.setdefault(key, key)
            start = None if head.started_at is None else head.started_at // BUCKET_MS
        return due_at(state, self.expiry_ms, self.tombstone_ms) // BUCKET_MS, census, start

    def move(self, chat: bytes, partition: int, before: Entry | None, after: Entry | None) -> None:
        """Refile a written chat: from what its state said when loaded to what it says now."""
        if before == after:
            return
        if before is not None:
            self._remove(chat, partition, before)
        if after is not None:
            wheel = self._wheels.setdefault(partition, {})
            wheel.setdefault(after[0], set()).add(chat)
            if after[1] is not None:
                self._open.setdefault(partition, Counter())[after[1]] += 1
            if after[2] is not None:
                self._starts.setdefault(partition, Counter())[after[2]] += 1

    def _remove(self, chat: bytes, partition: int, entry: Entry) -> None:
        bucket = self._wheels.get(partition, {}).get(entry[0])
        if bucket is not None:
            bucket.discard(chat)
            if not bucket:
                del self._wheels[partition][entry[0]]
        self.uncount(partition, entry)

    def take_due(self, partition: int, watermark: int) -> list[bytes]:
        """Unfile and return the chats that may be due at this watermark (the minute it is in
        included); the caller files each again from its state after the scan, as `move` from None."""
        wheel = self._wheels.get(partition)
        if not wheel:
            return []
        limit = watermark // BUCKET_MS
        chats: list[bytes] = []
        for bucket in [b for b in wheel if b <= limit]:
            chats.extend(wheel.pop(bucket))
        return chats

    def uncount(self, partition: int, entry: Entry | None) -> None:
        """Take a chat out of the census (take_due leaves it counted until its state is read again)."""
        if entry is None:
            return
        for counters, key in ((self._open, entry[1]), (self._starts, entry[2])):
            counter = counters.get(partition)
            if key is not None and counter is not None and counter.get(key, 0) > 0:
                counter[key] -= 1
                if not counter[key]:
                    del counter[key]

    def clear(self) -> None:
        self._wheels.clear()
        self._open.clear()
        self._starts.clear()

    def census(self, names) -> tuple[dict[str, int], int | None]:
        """Open chats per queue (the group's name as known now) and the oldest open chat's start minute, in ms."""
        by_queue: dict[str, int] = {}
        for counter in self._open.values():
            for (integration, group_id, group_name), n in counter.items():
                queue = names.for_integration(integration).get(group_id) or group_name or UNDEFINED_QUEUE
                by_queue[queue] = by_queue.get(queue, 0) + n
        starts = [minute for counter in self._starts.values() for minute in counter]
        return by_queue, (min(starts) * BUCKET_MS if starts else None)

    def filed(self) -> Iterable[bytes]:
        """Every chat filed (for tests)."""
        for wheel in self._wheels.values():
            for bucket in wheel.values():
                yield from bucket
