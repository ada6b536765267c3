"""Contact records with revisions, built by hand for tests of consumers (tail --final)."""

from __future__ import annotations

EMITTED_AT = "2024-05-08T09:00:00.123Z"


def contact(conversation: str, revision: int, queue: str, resolved_at: str, *, integration: str = "acme",
            cycle: int = 1, agent_id: str | None = "a-1") -> dict:
    """A full contact at `revision`, valid against schemas/contact.schema.json."""
    return {"v": 1, "contact_id": f"{integration}:{conversation}:{cycle}", "revision": revision,
            "retracted": False, "integration": integration, "source": "freshchat", "channel": "chats",
            "conversation_id": conversation, "cycle": cycle, "queue": queue, "group_id": f"g-{queue.lower()}",
            "agent_id": agent_id, "outcome": "resolved", "resolved_by": "agent",
            "started_at": "2024-05-06T09:00:00.000Z", "first_response_at": "2024-05-06T09:01:00.000Z",
            "resolved_at": resolved_at, "wait_seconds": 60.0, "duration_seconds": 600.0, "offered": True,
            "handled": True, "messages": {"user": 2, "agent": 1, "bot": 0, "system": 0, "private": 0},
            "emitted_at": EMITTED_AT}


def retraction(conversation: str, revision: int, queue: str, *, integration: str = "acme", cycle: int = 1) -> dict:
    """The retraction of that contact at `revision`, written under `queue`'s key."""
    return {"v": 1, "contact_id": f"{integration}:{conversation}:{cycle}", "revision": revision, "retracted": True,
            "integration": integration, "source": "freshchat", "channel": "chats", "conversation_id": conversation,
            "cycle": cycle, "queue": queue, "emitted_at": EMITTED_AT}


def key(record: dict) -> bytes:
    """The contacts-topic key the record is written under."""
    return f"{record['integration']}/{record['queue']}".encode()
