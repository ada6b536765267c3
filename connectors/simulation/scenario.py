"""Generated Freshchat traffic with its ground truth: the deliveries to post and the contacts they must yield.

This is an independent oracle for the pipeline. The expected contacts are computed from
the simulated timelines (connectors.simulation.chats) by the plain rules of
docs/contacts.md §3, never by the project's state machine. They are the FINAL contacts
of the timeline, whatever the delivery order. By default the order is a mild one, in
which cycles never interleave across a close: within a cycle events are shuffled, but a
cycle's closing event comes after the rest of that cycle, and the opening event of a
later cycle comes before the rest of that cycle. With `disorder` the same events are
delivered adversarially (connectors.simulation.order): across closes, after their own
close, re-posted while a later cycle is open.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import orjson

from connectors.simulation.chats import AGENTS, GROUPS, SimChat, SimEvent, generate_chat
from connectors.simulation.order import completions, disorder as disordered
from connectors.simulation.shapes import iso, render
from streams.domain.contact import final_revisions

__all__ = ["GROUPS", "AGENTS", "UNDEFINED_QUEUE", "DEFAULT_START", "Delivery", "Scenario",
           "build_scenario", "expected_contacts", "scenario_ending_now", "compare_contacts"]

UNDEFINED_QUEUE = "Undefined_Queue"
DEFAULT_START = datetime(2024, 5, 6, 8, 0, tzinfo=timezone.utc)
RETRY_SHARE = 0.03  # deliveries re-posted with the same body and X-Retry-Count: 1
SHUFFLE_SHARE = 0.3  # cycles whose events are delivered out of time order
GROUP_NAMES = {g["id"]: g["name"] for g in GROUPS}


@dataclass(frozen=True)
class Delivery:
    """One HTTP request to make: the exact body, extra headers, and the chat it belongs to."""

    body: bytes
    headers: dict[str, str]
    chat: str  # conversation id
    closes: int = 0  # the cycle whose final contact this delivery completes (first attempt only), else 0


@dataclass
class Scenario:
    """Deliveries in posting order, and the contacts (contact.schema.json minus emitted_at) they must produce."""

    deliveries: list[Delivery] = field(default_factory=list)
    expected: list[dict] = field(default_factory=list)


def build_scenario(integration: str, chats: int, seed: int, start: datetime | None = None,
                   first_index: int = 0, disorder: bool = False) -> Scenario:
    """A deterministic scenario of `chats` chats: the same arguments always give the same bytes.

    Chats are numbered from `first_index`, so scenarios built back to back (a soak posts
    one after another) never share a conversation id. `disorder` changes only the order
    of each chat's deliveries and adds late retries; the chats, their bodies and the
    expected contacts are those of the ordered scenario of the same seed (bodies never
    name the integration, so one scenario can be posted to several). Its choices come
    from a second generator, so the ordered scenario does not change.
    """
    rng = random.Random(seed)
    start_ms = int((start or DEFAULT_START).timestamp() * 1000)
    simulated = [generate_chat(rng, index, start_ms) for index in range(first_index, first_index + chats)]
    sequences = [_chat_sequence(rng, chat) for chat in simulated]
    if disorder:
        adversary = random.Random(f"disorder:{seed}")
        sequences = [disordered(adversary, chat, sequence) for chat, sequence in zip(simulated, sequences)]
    deliveries = _interleave(rng, simulated, sequences, slotted=disorder)
    expected = sorted((c for chat in simulated for c in expected_contacts(integration, chat)),
                      key=lambda c: c["contact_id"])
    return Scenario(deliveries, expected)


def _chat_sequence(rng: random.Random, chat: SimChat) -> list[tuple[SimEvent, int]]:
    """One chat's deliveries as (event, retry count), cycle after cycle."""
    sequence = []
    for n, cycle in enumerate(chat.cycles, 1):
        head = [cycle[0]] if n > 1 else []  # a later cycle's opener comes first
        middle = list(cycle[len(head):-1])
        if rng.random() < SHUFFLE_SHARE:
            rng.shuffle(middle)
        window = head + middle + [cycle[-1]] + (chat.after_close if n == len(chat.cycles) else [])
        sequence += _with_retries(rng, window)
    return sequence


def _with_retries(rng: random.Random, window: list[SimEvent]) -> list[tuple[SimEvent, int]]:
    """Re-post a few events later in the same window (before the next cycle's opener)."""
    out = [(event, 0) for event in window]
    for event in window:
        if rng.random() < RETRY_SHARE:
            original = next(i for i, (e, retry) in enumerate(out) if e is event and not retry)
            out.insert(rng.randint(original + 1, len(out)), (event, 1))
    return out


def _interleave(rng: random.Random, chats: list[SimChat], sequences, slotted: bool = False) -> list[Delivery]:
    """Merge the chats as live traffic would arrive: by event time plus network jitter, each chat in order.

    `slotted` (disorder): the k-th first attempt of a chat goes out at the k-th earliest
    event time of the chat, whichever event it carries, so a reordered chat is still
    spread over its lifetime instead of bunching up behind an early-delivered late event.
    """
    keyed = []
    for c, (chat, sequence) in enumerate(zip(chats, sequences)):
        bodies, last = {}, 0
        complete = completions(chat, sequence)
        slots = iter(sorted(event.time_ms for event, retry in sequence if not retry)) if slotted else None
        for s, (event, retry) in enumerate(sequence):
            if retry:
                when = last + rng.randint(1_000, 60_000)
            else:
                when = (next(slots) if slots else event.time_ms) + rng.randint(0, 3_000)
            last = max(last + 1, when)
            body = bodies.setdefault(id(event), orjson.dumps(render(chat, event)))
            headers = {"X-Retry-Count": str(retry)} if retry else {}
            keyed.append((last, c, s, Delivery(body, headers, chat.conversation_id, complete.get(s, 0))))
    keyed.sort(key=lambda k: k[:3])
    return [k[3] for k in keyed]


def expected_contacts(integration: str, chat: SimChat) -> list[dict]:
    """The contacts docs/contacts.md §3 prescribes for a chat, one per closed cycle."""
    history = [event for cycle in chat.cycles for event in cycle]
    return [_contact(integration, chat, n, cycle, history) for n, cycle in enumerate(chat.cycles, 1)]


def _contact(integration: str, chat: SimChat, n: int, cycle: list[SimEvent], history) -> dict:
    close = cycle[-1]
    started = min(e.time_ms for e in cycle)
    counted = _message_counts(cycle)
    answers = [e for e in cycle if _counts_as(e) == "agent"]
    first = min((e.time_ms for e in answers), default=None)
    group = _at_close(history, close.time_ms, "group")
    agent = _at_close(history, close.time_ms, "agent")
    if agent is None and answers:  # never assigned: the last agent who answered in the cycle
        agent = max(answers, key=lambda e: e.time_ms).actor_id
    outcome = "resolved" if close.kind == "resolve" else close.status
    return {
        "v": 1, "contact_id": f"{integration}:{chat.conversation_id}:{n}", "integration": integration,
        "source": "freshchat", "channel": "chats", "conversation_id": chat.conversation_id, "cycle": n,
        "queue": GROUP_NAMES[group] if group and outcome == "resolved" else UNDEFINED_QUEUE,
        "group_id": group, "agent_id": agent, "outcome": outcome, "resolved_by": close.actor_type,
        "started_at": iso(started), "first_response_at": iso(first) if first is not None else None,
        "resolved_at": iso(close.time_ms),
        "wait_seconds": round((first - started) / 1000, 3) if first is not None else None,
        "duration_seconds": round((close.time_ms - started) / 1000, 3),
        "offered": counted["user"] > 0, "handled": counted["agent"] > 0, "messages": counted,
    }


def _at_close(history: list[SimEvent], close_ms: int, what: str) -> str | None:
    """The group or agent set by the latest assignment at or before the close, over the whole chat."""
    setters = [e for e in history if e.kind == "assign" and getattr(e, what) and e.time_ms <= close_ms]
    return getattr(max(setters, key=lambda e: e.time_ms), what) if setters else None


def _counts_as(event: SimEvent) -> str | None:
    """Which `messages` counter a message goes to: private notes, system messages, else its actor."""
    if event.kind != "message":
        return None
    if event.message_type in ("private", "system"):
        return event.message_type
    return event.actor_type


def _message_counts(cycle: list[SimEvent]) -> dict[str, int]:
    counts = {"user": 0, "agent": 0, "bot": 0, "system": 0, "private": 0}
    for event in cycle:
        kind = _counts_as(event)
        if kind:
            counts[kind] += 1
    return counts


def scenario_ending_now(integration: str, chats: int, seed: int = 1, now: datetime | None = None) -> Scenario:
    """The simulated scenario moved so that its last event is about now: live metrics, lag in
    seconds and "the last hour" then mean what they would in production.

    Every time in a scenario is its start plus offsets drawn independently of it, so the
    span measured from the same draws (build_scenario draws the chats first) fixes the start.
    """
    now = now or datetime.now(timezone.utc)
    rng = random.Random(seed)
    origin = int(DEFAULT_START.timestamp() * 1000)
    last = max(event.time_ms for chat in (generate_chat(rng, index, origin) for index in range(chats))
               for event in [e for cycle in chat.cycles for e in cycle] + chat.after_close)
    return build_scenario(integration, chats, seed, start=now - timedelta(milliseconds=last - origin))


UNCOMPARED = ("emitted_at", "revision", "retracted")  # what the worker adds to the simulator's contacts


def compare_contacts(expected: list[dict], received) -> tuple[int, int]:
    """(received, differing) of the expected contacts, each received one at its final revision.

    A contact retracted at its final revision was not received; extras (a contact posted by
    hand with the banner's curl) are not the simulator's to judge.
    """
    final = final_revisions(received)
    got = differing = 0
    for contact in expected:
        record = final.get(contact["contact_id"])
        if record is None or record.get("retracted", False):
            continue
        got += 1
        if {k: v for k, v in record.items() if k not in UNCOMPARED} != contact:
            differing += 1
    return got, differing
