"""The raw envelope (schemas/raw-event.schema.json): what the ingress writes for every accepted event.

Pure functions only: the ingress calls them, tests call them without a server.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson

__all__ = [
    "InvalidEvent",
    "InvalidJSON",
    "RawEvent",
    "WEBHOOK_ACTIONS",
    "APP_EVENTS",
    "parse_body",
    "conversation_id_of",
    "event_id",
    "encode_envelope",
]

WEBHOOK_ACTIONS = {
    "message_create": ("message",),
    "conversation_assignment": ("assignment", "conversation"),
    "conversation_resolution": ("resolve", "conversation"),
    "conversation_reopen": ("reopen", "conversation"),
}
APP_EVENTS = {"onConversationCreate", "onConversationUpdate", "onMessageCreate"}


class InvalidJSON(ValueError):
    """The body is not JSON; the message says what was wrong and where."""


class InvalidEvent(ValueError):
    """The body is JSON but not a Freshchat event freshstream can route."""


@dataclass(frozen=True)
class RawEvent:
    """One event of a request, ready to be wrapped in an envelope."""

    format: str  # "webhook" | "app"
    kind: str  # the action or event name
    conversation_id: str | None
    payload: bytes  # the event's JSON, byte-identical to the request for a single object


def parse_body(body: bytes) -> list[RawEvent]:
    """Split a request body into events, validating each; all-or-nothing."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSON(f"the body is not valid JSON ({exc}); send one UTF-8 JSON object or an array of them") from None
    if isinstance(doc, dict):
        return [_event(doc, body, None)]
    if isinstance(doc, list):
        if not doc:
            raise InvalidEvent("the JSON array is empty; send at least one event object")
        return [_event(item, None, i) for i, item in enumerate(doc)]
    raise InvalidEvent("the body must be a JSON object or an array of objects, not a bare " + _type_name(doc))


def _event(doc, raw: bytes | None, index: int | None) -> RawEvent:
    where = "" if index is None else f"element {index} of the array: "
    if not isinstance(doc, dict):
        raise InvalidEvent(f"{where}each event must be a JSON object, not {_type_name(doc)}")
    action, event = doc.get("action"), doc.get("event")
    if isinstance(action, str) and action:
        fmt, kind = "webhook", action
    elif isinstance(event, str) and event:
        fmt, kind = "app", event
    else:
        raise InvalidEvent(
            f"{where}the event has neither an \"action\" (Freshchat webhook) nor an \"event\" "
            "(Marketplace app) string; send events as Freshchat produces them"
        )
    try:
        conv = conversation_id_of(fmt, kind, doc)
    except InvalidEvent as exc:
        raise InvalidEvent(where + str(exc)) from None
    payload = raw if raw is not None else orjson.dumps(doc)
    return RawEvent(fmt, kind, conv, payload)


def conversation_id_of(fmt: str, kind: str, doc: dict) -> str | None:
    """The conversation id, required for the kinds that are about one conversation."""
    data = doc.get("data")
    data = data if isinstance(data, dict) else {}
    if fmt == "webhook" and kind in WEBHOOK_ACTIONS:
        path = ("data",) + WEBHOOK_ACTIONS[kind] + ("conversation_id",)
        return _required_id(_dig(data, path[1:]), path, kind)
    if fmt == "app" and kind in APP_EVENTS:
        section = "message" if kind == "onMessageCreate" else "conversation"
        path = ("data", section, "conversation_id")
        return _required_id(_dig(data, path[1:]), path, kind)
    return _optional_id(data)


def _dig(node, path):
    for name in path:
        if not isinstance(node, dict):
            return None
        node = node.get(name)
    return node


def _required_id(value, path, kind) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        dotted = ".".join(path)
        found = "it is missing" if value is None else f"it is {_type_name(value)}"
        raise InvalidEvent(f"a {kind} event needs a conversation id string at {dotted}, but {found}")
    return str(value)


def _optional_id(data: dict) -> str | None:
    """Best effort for kinds freshstream keeps but does not use downstream."""
    for section in data.values():
        if isinstance(section, dict):
            for node in (section, section.get("conversation")):
                value = node.get("conversation_id") if isinstance(node, dict) else None
                if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "":
                    return str(value)
    return None


def _type_name(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), "a value")


def event_id(integration: str, body: bytes, index: int | None = None) -> str:
    """sha256 of integration + raw body (+ the array index), so a retry keeps its id."""
    digest = hashlib.sha256(integration.encode() + body)
    if index is not None:
        digest.update(b"#%d" % index)
    return digest.hexdigest()


def encode_envelope(*, event_id: str, integration: str, received_at: str, fmt: str,
                    retry_count: int, payload: bytes) -> bytes:
    """Serialise the envelope, splicing the payload in as received (no re-encoding)."""
    head = orjson.dumps({
        "v": 1, "event_id": event_id, "integration": integration,
        "received_at": received_at, "format": fmt, "retry_count": retry_count,
    })
    return head[:-1] + b',"payload":' + payload + b"}"
