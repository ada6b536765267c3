"""Normalisation: a raw envelope becomes one canonical chat event (docs/contacts.md §1).

Pure: no Faust, no I/O. Whatever cannot be used is reported as a Skip with a reason,
so the worker can count it instead of crashing on it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from streams.domain.envelope import APP_EVENTS, WEBHOOK_ACTIONS
from streams.domain.keys import chat_key
from streams.domain.times import parse_time

__all__ = ["ChatEvent", "Skip", "normalise", "normalise_or_skip", "OPEN_STATUSES"]

logger = logging.getLogger(__name__)

OPEN_STATUSES = {"new", "assigned", "resolved", "reopened", "reopen"}
_WEBHOOK_SECTION = {action: path[0] for action, path in WEBHOOK_ACTIONS.items()}  # where its data lives
_WEBHOOK_KIND = {"message_create": "message", "conversation_assignment": "assign",
                 "conversation_resolution": "resolve", "conversation_reopen": "reopen"}
_ACTORS = {"user", "agent", "bot", "system"}


@dataclass(slots=True)
class ChatEvent:
    """What one Freshchat event says about one chat, in freshstream's terms.

    Treated as immutable but not frozen: a frozen dataclass's __init__ costs four times
    as much, once per event on the worker's and replay's hot path.
    """

    integration: str
    conversation_id: str
    kind: str  # message | assign | resolve | reopen | terminal | open
    at: int  # event time, epoch milliseconds
    actor: str  # user | agent | bot | system
    message_type: str | None = None  # normal | private | system, messages only
    message_id: str | None = None
    actor_id: str | None = None  # who sent a message
    group_id: str | None = None
    group_name: str | None = None
    agent_id: str | None = None
    status: str | None = None  # the terminal status, e.g. deleted or spam
    timeless: bool = False  # no event time in the payload: received_at was used
    source: str = "webhook"  # webhook | app: tells a resolution's two copies apart (docs/contacts.md §2)
    received_at: int | None = None  # when the ingress accepted it: bounds how far ahead its time may count
    event_id: str | None = None  # kept for timeless events only, whose identity it is

    @property
    def chat_key(self) -> str:
        return chat_key(self.integration, self.conversation_id)

    def identity(self) -> int:
        """48-bit fingerprint of kind + time + what the event sets: equal for duplicates.

        A timeless event's time is its arrival, which differs between a message and its
        retry, so its identity is its event_id instead: a retry carries the same body.
        """
        if self.timeless:
            text = f"timeless|{self.event_id}"
        else:
            detail = self.message_id if self.kind == "message" else f"{self.group_id}|{self.agent_id}|{self.status}"
            text = f"{self.kind}|{self.at}|{detail}"
        digest = hashlib.blake2b(text.encode(), digest_size=6).digest()
        return int.from_bytes(digest, "big")


@dataclass(frozen=True, slots=True)
class Skip:
    """An envelope that yields no chat event, and why (a metrics label)."""

    reason: str


def normalise(envelope: dict) -> ChatEvent | Skip:
    """The chat event an envelope describes, or why it describes none."""
    payload = envelope.get("payload")
    if not isinstance(payload, dict):
        return Skip("no_payload")
    data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
    if envelope.get("format") == "webhook":
        parsed = _webhook(payload, data)
    else:
        parsed = _app(payload, data)
    if isinstance(parsed, Skip):
        return parsed
    fields, times = parsed
    conversation = fields.pop("conversation_id", None)
    if isinstance(conversation, bool) or not isinstance(conversation, (str, int)) or conversation == "":
        return Skip("no_conversation_id")
    at = _first_time(times) or _first_time((payload.get("action_time"), _dig(data, "message", "created_time"),
                                            payload.get("timestamp")))
    received_at = parse_time(envelope.get("received_at"))
    timeless = at is None
    if timeless:
        at = received_at
        if at is None:
            return Skip("no_event_time")
    return ChatEvent(integration=str(envelope.get("integration", "")), conversation_id=str(conversation),
                     at=at, timeless=timeless, received_at=received_at,
                     source="webhook" if envelope.get("format") == "webhook" else "app",
                     event_id=str(envelope.get("event_id")) if timeless else None, **fields)


def normalise_or_skip(envelope) -> ChatEvent | Skip:
    """normalise, with a bug in it counted as a skip: one poison record must not stop the
    worker's agent, which would crash on the same record again after every restart."""
    if not isinstance(envelope, dict):
        return Skip("unreadable_envelope")
    try:
        return normalise(envelope)
    except Exception:  # noqa: BLE001 - logged with its traceback, counted, and the stream goes on
        logger.exception("normalise failed on event %s; skipped", envelope.get("event_id"))
        return Skip("normalise_error")


def _webhook(payload: dict, data: dict):
    action = payload.get("action")
    if not isinstance(action, str) or action not in _WEBHOOK_KIND:  # a list would not even hash
        return Skip("unsupported_action")
    section = data.get(_WEBHOOK_SECTION[action])
    section = section if isinstance(section, dict) else {}
    conversation = section if action == "message_create" else _obj(section.get("conversation"))
    actor = _obj(payload.get("actor")).get("actor_type")
    fields = {"kind": _WEBHOOK_KIND[action], "conversation_id": conversation.get("conversation_id"),
              "actor": _actor(section.get("actor_type") if action == "message_create" else actor, actor),
              "group_id": _id(section.get("to_group_id")) or _id(conversation.get("assigned_group_id")),
              "agent_id": _id(section.get("to_agent_id")) or _id(conversation.get("assigned_agent_id"))}
    if action == "message_create":
        fields.update(_message_fields(section))
        return fields, [section.get("created_time"), payload.get("action_time")]
    return fields, [payload.get("action_time")]


def _app(payload: dict, data: dict):
    event = payload.get("event")
    if not isinstance(event, str) or event not in APP_EVENTS:  # a list would not even hash
        return Skip("unsupported_event")
    conversation = _obj(data.get("conversation"))
    message = _obj(data.get("message"))
    group = _obj(_obj(data.get("associations")).get("group"))
    changes = _obj(_obj(data.get("changes")).get("model_changes"))
    actor_type = _obj(data.get("actor")).get("type")
    fields = {"conversation_id": (message if event == "onMessageCreate" else conversation).get("conversation_id"),
              "actor": _actor(message.get("actor_type") if event == "onMessageCreate" else actor_type, actor_type),
              "group_id": _changed(changes, "assigned_group_id") or _id(group.get("id"))
              or _id(conversation.get("assigned_group_id")),
              "agent_id": _changed(changes, "assigned_agent_id") or _id(conversation.get("assigned_agent_id"))
              or _id(_obj(_obj(data.get("associations")).get("agent")).get("id"))}
    if fields["group_id"] is not None and fields["group_id"] == _id(group.get("id")):
        fields["group_name"] = group.get("name") if isinstance(group.get("name"), str) else None
    if event == "onMessageCreate":
        fields.update(kind="message", **_message_fields(message))
        return fields, [message.get("created_time")]
    if event == "onConversationCreate":
        fields["kind"] = "open"
        return fields, [conversation.get("created_time"), payload.get("timestamp")]
    return _app_update(fields, payload, conversation, changes)


def _app_update(fields: dict, payload: dict, conversation: dict, changes: dict):
    status = _changed(changes, "status")
    current = conversation.get("status") if isinstance(conversation.get("status"), str) else None
    if status is None and current is not None and current not in OPEN_STATUSES:
        status = current
    if status == "resolved":
        fields["kind"] = "resolve"
    elif status in ("reopened", "reopen"):
        fields["kind"] = "reopen"
        return fields, [conversation.get("reopened_time"), payload.get("timestamp")]
    elif status is not None and status not in OPEN_STATUSES:
        fields.update(kind="terminal", status=status)
    else:
        fields["kind"] = "assign"
    return fields, [payload.get("timestamp")]


def _message_fields(message: dict) -> dict:
    kind = message.get("message_type")
    return {"message_type": kind if isinstance(kind, str) and kind else "normal",
            "message_id": _id(message.get("id")), "actor_id": _id(message.get("actor_id"))}


def _changed(changes: dict, name: str) -> str | None:
    pair = changes.get(name)
    if isinstance(pair, list) and len(pair) == 2:
        return _id(pair[1])
    return None


def _actor(primary, fallback) -> str:
    for value in (primary, fallback):
        if isinstance(value, str) and value.lower() in _ACTORS:
            return value.lower()
    return "system"


def _id(value) -> str | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    return str(value) if isinstance(value, (str, int)) else None


def _obj(value) -> dict:
    return value if isinstance(value, dict) else {}


def _dig(node: dict, *path):
    for name in path:
        node = node.get(name) if isinstance(node, dict) else None
    return node


def _first_time(candidates) -> int | None:
    for value in candidates:
        at = parse_time(value)
        if at is not None:
            return at
    return None
