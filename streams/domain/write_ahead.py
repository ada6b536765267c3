"""Write-ahead marks: why a worker's crash can repeat a contact revision but never lose,
renumber or re-send a lower one.

A batch's chat states record the revisions about to be sent, marked `unsent` with the
writer (this incarnation and the batch's sequence number); they are acknowledged before
the contacts are sent, and after those are acknowledged a confirmation per partition
(`<incarnation>@<partition>` → sequence) is written. Whoever loads a state later settles
its marks: a batch this incarnation ran earlier was sent (batches run one after another);
another incarnation's batch was sent if its confirmation says so (a clean stop, a
rebalance); otherwise the writer died in between, and the marked revisions are re-sent
from the state with their own numbers.
"""

from __future__ import annotations

import uuid
from typing import Callable, MutableMapping

from streams.domain.chat import ChatState

__all__ = ["WriteAhead", "CLEARED", "RESEND"]

CLEARED, RESEND = "cleared", "resend"


class WriteAhead:
    """This incarnation's marks and confirmations."""

    def __init__(self, confirmed: MutableMapping[bytes, bytes], partition_of: Callable[[bytes], int]) -> None:
        self.confirmed, self.partition_of = confirmed, partition_of
        self.incarnation, self.sequence = uuid.uuid4().hex[:12], 0

    def mark(self, chat: bytes, state: ChatState, cycle: int, retractions: list, marked: set[int]) -> None:
        """Record in the state that this batch will send cycle's last revision (and these retractions)."""
        state.unsent.setdefault(cycle, []).extend(retractions)
        self.adopt(chat, state, marked)

    def adopt(self, chat: bytes, state: ChatState, marked: set[int]) -> None:
        """Make the state's marks this batch's (after re-sending them for a dead writer)."""
        state.writer = f"{self.incarnation}:{self.sequence}"
        marked.add(self.partition_of(chat))

    def settle(self, chat: bytes, state: ChatState) -> str | None:
        """What a loaded state's marks need: None (there are none), CLEARED (they were sent and
        are dropped), or RESEND (their writer may have died before sending them)."""
        if not state.unsent:
            return None
        writer, _, sequence = (state.writer or "").partition(":")
        if writer != self.incarnation:
            confirmed = self.confirmed.get(f"{writer}@{self.partition_of(chat)}".encode())
            if confirmed is None or int(confirmed) < int(sequence or 0):
                return RESEND
        state.unsent.clear()
        return CLEARED

    def confirmations(self, marked: set[int]) -> dict[bytes, bytes]:
        """The records saying this batch was sent, for each partition it marked; the next batch
        gets the next sequence number."""
        value = str(self.sequence).encode()
        self.sequence += 1
        return {f"{self.incarnation}@{partition}".encode(): value for partition in marked}

    def abandon(self) -> None:
        """After a failed send: become a new incarnation, so this one's marks count as a dead
        writer's and are re-sent by whoever loads them next."""
        self.incarnation, self.sequence = uuid.uuid4().hex[:12], 0
