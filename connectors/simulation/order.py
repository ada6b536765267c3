"""Adversarial delivery orders (`build_scenario(..., disorder=True)`): the same events, delivered as badly as allowed.

Why: the worker must give the same final contacts whatever order a chat's events arrive
in and however often (cycles are cut by event time; a late event revises its contact).
The ordered scenario never lets a cycle cross a close, so it cannot show that. Here each
chat's ordered sequence is rearranged: closes come after the next cycle's opener, events
come after their own cycle's close, whole chats arrive shuffled, and closes are re-posted
(same body, `X-Retry-Count: 1`) while a later cycle is open. The first attempts are the
very events of the ordered sequence and its retries are kept, so the expected contacts
are unchanged. Every choice here is drawn from the caller's own random.Random, never from
the one that drew the chats, so the ordered scenario of a seed stays byte for byte the same.
"""

from __future__ import annotations

import random

from connectors.simulation.chats import SimChat, SimEvent

__all__ = ["disorder", "completions", "CROSS_SHARE", "LATE_SHARE", "CHAT_SHUFFLE_SHARE", "LATE_RETRY_SHARE"]

CHAT_SHUFFLE_SHARE = 0.15  # chats whose events all arrive in an arbitrary order
CROSS_SHARE = 0.6  # other chats of several cycles: each close is delivered after the next cycle's opener
LATE_SHARE = 0.5  # other chats: a few events of each cycle are delivered after its close
LATE_RETRY_SHARE = 0.4  # closes of a non-final cycle re-posted once a later cycle has been opened
LATE_RETRY_OTHER = 0.03  # the same for the other events of a non-final cycle

Sequence = list[tuple[SimEvent, int]]  # (event, retry count) in delivery order


def disorder(rng: random.Random, chat: SimChat, sequence: Sequence) -> Sequence:
    """One chat's ordered `sequence` rearranged: the same first attempts and retries, plus late retries.

    Every retry still comes after the first attempt of its event, as a sender's retry does.
    """
    order = [event for event, retry in sequence if not retry]
    if rng.random() < CHAT_SHUFFLE_SHARE:
        rng.shuffle(order)
    else:
        if len(chat.cycles) > 1 and rng.random() < CROSS_SHARE:
            _cross_closes(rng, chat, order)
        if rng.random() < LATE_SHARE:
            _late_events(rng, chat, order)
    out = [(event, 0) for event in order]
    for event in (event for event, retry in sequence if retry):
        _insert_after(rng, out, event, event)
    for event, opener in _late_retries(rng, chat):
        _insert_after(rng, out, event, opener)
    return out


def _cross_closes(rng: random.Random, chat: SimChat, order: list[SimEvent]) -> None:
    """Move each non-final close somewhere after the next cycle's opener (possibly past later closes)."""
    for n in range(len(chat.cycles) - 1):
        close, opener = chat.cycles[n][-1], chat.cycles[n + 1][0]
        order.pop(_index(order, close))
        order.insert(rng.randint(_index(order, opener) + 1, len(order)), close)


def _late_events(rng: random.Random, chat: SimChat, order: list[SimEvent]) -> None:
    """Move one to three events of each cycle (its opener too) somewhere after that cycle's close."""
    for cycle in chat.cycles:
        movable = cycle[:-1]
        if not movable:
            continue
        for event in rng.sample(movable, rng.randint(1, min(3, len(movable)))):
            order.pop(_index(order, event))
            order.insert(rng.randint(_index(order, cycle[-1]) + 1, len(order)), event)


def _index(order: list[SimEvent], event: SimEvent) -> int:
    """Where `event` itself is (by identity: events are values, two could compare equal)."""
    return next(i for i, e in enumerate(order) if e is event)


def _late_retries(rng: random.Random, chat: SimChat) -> list[tuple[SimEvent, SimEvent]]:
    """(event to re-post, the opener it must follow): cycle n's events after cycle n+2's opener, else n+1's."""
    chosen = []
    for n, cycle in enumerate(chat.cycles[:-1]):
        opener = chat.cycles[min(n + 2, len(chat.cycles) - 1)][0]
        chosen += [(cycle[-1], opener)] if rng.random() < LATE_RETRY_SHARE else []
        chosen += [(event, opener) for event in cycle[:-1] if rng.random() < LATE_RETRY_OTHER]
    return chosen


def _insert_after(rng: random.Random, out: Sequence, event: SimEvent, after: SimEvent) -> None:
    """Insert a retry of `event` at a random place after the first attempts of `event` and of `after`."""
    firsts = {id(e): i for i, (e, retry) in enumerate(out) if not retry}
    first = max(firsts[id(event)], firsts[id(after)])
    out.insert(rng.randint(first + 1, len(out)), (event, 1))


def completions(chat: SimChat, sequence: Sequence) -> dict[int, int]:
    """Index in `sequence` → the cycle whose final contact that delivery completes (`Delivery.closes`).

    A cycle's contact depends on every event up to its close, earlier cycles included (the
    group and agent at the close carry over), so cycle n is complete at the last first
    attempt among the events of cycles 1..n. In an ordered sequence that is cycle n's
    closing event; under disorder it may be any event. When one delivery completes several
    cycles it names the latest, and the earlier ones are left unmarked (not timed).
    """
    cycle_of = {id(event): n for n, cycle in enumerate(chat.cycles, 1) for event in cycle}
    last_of: dict[int, int] = {}
    for index, (event, retry) in enumerate(sequence):
        if not retry and id(event) in cycle_of:
            last_of[cycle_of[id(event)]] = index
    marks, complete_at = {}, -1
    for n in range(1, len(chat.cycles) + 1):
        complete_at = max(complete_at, last_of[n])
        marks[complete_at] = n
    return marks
