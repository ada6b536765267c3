"""The contact record (docs/contacts.md §3–4): built from a closed cycle, revised, or retracted."""

from __future__ import annotations

from streams.domain.cycles import MESSAGE_BUCKETS, Closed
from streams.domain.keys import contact_id
from streams.domain.times import ms_to_time

__all__ = ["UNDEFINED_QUEUE", "build_contact", "build_retraction", "revision_plan", "revision_order", "final_revisions", "queue_for"]

UNDEFINED_QUEUE = "Undefined_Queue"
_COUNTED_OUTCOMES = {"resolved", "expired"}


def queue_for(closed: Closed, names: dict[str, str] | None) -> str | None:
    """The queue name, Undefined_Queue, or None while the group's name is still unknown."""
    if closed.outcome not in _COUNTED_OUTCOMES or closed.group_id is None:
        return UNDEFINED_QUEUE
    name = (names or {}).get(closed.group_id) or closed.group_name
    return name or None


def build_contact(integration: str, conversation_id: str, closed: Closed, queue: str,
                  emitted_at_ms: int, revision: int = 1) -> dict:
    """The contact as written to the contacts topic; every field but emitted_at is deterministic."""
    first = closed.first_response_at
    counts = dict(zip(MESSAGE_BUCKETS, closed.counts))
    return {
        "v": 1, "contact_id": contact_id(integration, conversation_id, closed.cycle), "revision": revision,
        "retracted": False, "integration": integration, "source": "freshchat", "channel": "chats",
        "conversation_id": conversation_id, "cycle": closed.cycle, "queue": queue,
        "group_id": closed.group_id, "agent_id": closed.agent_id, "outcome": closed.outcome,
        "resolved_by": closed.resolved_by, "started_at": ms_to_time(closed.started_at),
        "first_response_at": ms_to_time(first) if first is not None else None,
        "resolved_at": ms_to_time(closed.resolved_at),
        "wait_seconds": round((first - closed.started_at) / 1000, 3) if first is not None else None,
        "duration_seconds": round((closed.resolved_at - closed.started_at) / 1000, 3),
        "offered": counts["user"] > 0, "handled": counts["agent"] > 0, "messages": counts,
        "emitted_at": ms_to_time(emitted_at_ms),
    }


def build_retraction(integration: str, conversation_id: str, cycle: int, queue: str, revision: int,
                     emitted_at_ms: int) -> dict:
    """The final revision of a contact that turned out not to exist (or moved away from `queue`)."""
    return {"v": 1, "contact_id": contact_id(integration, conversation_id, cycle), "revision": revision,
            "retracted": True, "integration": integration, "source": "freshchat", "channel": "chats",
            "conversation_id": conversation_id, "cycle": cycle, "queue": queue,
            "emitted_at": ms_to_time(emitted_at_ms)}


def revision_plan(revision: int, queue: str | None, new_queue: str | None) -> list[tuple[int, str, bool]]:
    """The records a change writes, as (revision, queue, retracted), after `revision` went to `queue`.

    `queue` None: nothing of this contact is live (never emitted, or retracted). `new_queue`
    None: the contact no longer exists. A move retracts under the old queue first, so a
    consumer of one queue's partition alone never counts the contact twice.
    """
    if new_queue is None:
        return [] if queue is None else [(revision + 1, queue, True)]
    if queue is None or queue == new_queue:
        return [(revision + 1, new_queue, False)]
    return [(revision + 1, queue, True), (revision + 2, new_queue, False)]


def final_revisions(records) -> dict:
    """The record a consumer keeps of each contact_id, by revision_order; retractions included."""
    final: dict = {}
    for record in records:
        known = final.get(record["contact_id"])
        if known is None or revision_order(record) > revision_order(known):
            final[record["contact_id"]] = record
    return final


def revision_order(record) -> tuple[int, str]:
    """What a consumer compares to keep one record per contact_id: the higher revision wins,
    and of two records with the same revision the later `emitted_at` (a worker that crashed
    after emitting a revision re-emits it after recovery, possibly folded from more events).
    A record without `revision`, written before revisions existed, is revision 1."""
    return record.get("revision", 1), record.get("emitted_at") or ""
