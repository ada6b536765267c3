"""Render simulated chat events as the payloads Freshchat sends (docs/freshchat.md §1–2).

Each event's time is rendered into the one field docs/contacts.md reads it from: a
message's `created_time`, a webhook's `action_time`, an app create's `created_time`,
an app reopen's `reopened_time`, any other app update's envelope `timestamp` (seconds
or milliseconds, per chat). Group names appear only in app events; webhook chats carry
group ids, whose names come from the REST API.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from connectors.simulation.chats import GROUPS, SimChat, SimEvent
from streams.domain.times import format_time

__all__ = ["render", "iso"]

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
GROUP_NAMES = {g["id"]: g["name"] for g in GROUPS}
APP_EVENT = {"open": "onConversationCreate", "message": "onMessageCreate"}  # others: onConversationUpdate
SUB_ENTITY = {"system": "auto_resolve", "bot": "freddy_bot"}


def iso(ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC with milliseconds, computed exactly (no float)."""
    return format_time(EPOCH + timedelta(milliseconds=ms))


def render(chat: SimChat, event: SimEvent) -> dict:
    """The Freshchat payload for one event of one chat."""
    return _webhook(chat, event) if chat.fmt == "webhook" else _app(chat, event)


def _compact(mapping: dict) -> dict:
    """Drop unknown values: the simulator never sends a null that could erase a known group/agent."""
    return {k: v for k, v in mapping.items() if v is not None}


def _webhook(chat: SimChat, e: SimEvent) -> dict:
    body = {"actor": {"actor_type": e.actor_type, "actor_id": e.actor_id}}
    if e.kind == "message":
        return {**body, "action": "message_create", "action_time": iso(e.time_ms),
                "data": {"message": _webhook_message(chat, e)}}
    conversation = {"conversation_id": chat.conversation_id, "app_id": chat.app_id}
    if e.kind == "assign":
        section = _compact({"assignor": e.actor_type, "assignor_id": e.actor_id,
                            "to_agent_id": e.agent, "to_group_id": e.group,
                            "from_agent_id": e.from_agent, "from_group_id": e.from_group})
        section["conversation"] = _compact({**conversation, "status": "assigned", "channel_id": chat.channel_id,
                                            "assigned_agent_id": e.agent, "assigned_group_id": e.group})
        return {**body, "action": "conversation_assignment", "action_time": iso(e.time_ms),
                "data": {"assignment": section}}
    if e.kind == "resolve":
        section = {"resolver": e.actor_type, "resolver_id": e.actor_id,
                   "conversation": {**conversation, "status": "resolved", "channel_id": chat.channel_id}}
        return {**body, "action": "conversation_resolution", "action_time": iso(e.time_ms),
                "data": {"resolve": section}}
    status = "reopen" if chat.variant == "2018" else "reopened"
    section = {"reopener": e.actor_type, "reopener_id": e.actor_id, "interaction_id": e.interaction_id,
               "conversation": _compact({**conversation, "status": status,
                                         "assigned_group_id": None if e.terse else e.group})}
    return {**body, "action": "conversation_reopen", "action_time": iso(e.time_ms), "data": {"reopen": section}}


def _webhook_message(chat: SimChat, e: SimEvent) -> dict:
    if chat.variant == "2018":
        parts = {"msg_parts": [{"properties": {"text": e.text}, "part_type": "text"}]}
    else:
        parts = {"message_parts": [{"text": {"content": e.text}}], "message_source": "web"}
    message = {**parts, "app_id": chat.app_id, "actor_id": e.actor_id, "id": e.message_id,
               "channel_id": chat.channel_id, "conversation_id": chat.conversation_id,
               "message_type": e.message_type, "actor_type": e.actor_type,
               "created_time": iso(e.time_ms), "interaction_id": e.interaction_id, "user_id": chat.user_id}
    if e.terse:  # one documented sample has no message_type: it means "normal"
        del message["message_type"]
    return message


def _app(chat: SimChat, e: SimEvent) -> dict:
    timestamp = e.time_ms // 1000 if chat.variant == "s" else e.time_ms
    actor = {"id": e.actor_id, "type": e.actor_type}
    if e.actor_type in SUB_ENTITY:
        actor["sub_entity"] = SUB_ENTITY[e.actor_type]
    data = {"actor": actor}
    if e.kind == "message":
        data["message"] = {"id": e.message_id, "conversation_id": chat.conversation_id,
                           "actor_type": e.actor_type, "actor_id": e.actor_id, "message_type": e.message_type,
                           "created_time": iso(e.time_ms), "message_parts": [{"text": {"content": e.text}}]}
    else:
        data["conversation"] = _app_conversation(chat, e)
    if e.kind not in ("open", "message"):
        data["changes"] = {"model_changes": _model_changes(e)}
    data["associations"] = _associations(chat, e)
    return {"account_id": "100001", "domain": "simulated.freshchat.com",
            "event": APP_EVENT.get(e.kind, "onConversationUpdate"), "region": "US",
            "timestamp": timestamp, "version": "1.0.0", "iparams": {}, "data": data}


def _app_conversation(chat: SimChat, e: SimEvent) -> dict:
    """The conversation object; nulls appear only while the chat never had a group/agent."""
    conversation = {"conversation_id": chat.conversation_id, "app_id": chat.app_id, "status": e.status,
                    "assigned_group_id": e.group, "assigned_agent_id": e.agent, "channel_id": chat.channel_id,
                    "created_time": iso(chat.created_ms), "user_id": chat.user_id}
    if e.reopened_ms is not None:
        conversation["reopened_time"] = iso(e.reopened_ms)
    return conversation


def _model_changes(e: SimEvent) -> dict:
    changes = {}
    if e.status != e.from_status and not (e.kind == "terminal" and e.terse):
        changes["status"] = [e.from_status, e.status]
    if e.kind == "assign" and e.group != e.from_group:
        changes["assigned_group_id"] = [e.from_group, e.group]
    if e.kind == "assign" and e.agent != e.from_agent:
        changes["assigned_agent_id"] = [e.from_agent, e.agent]
    return changes


def _associations(chat: SimChat, e: SimEvent) -> dict:
    associations = {"user": {"id": chat.user_id}, "channel": {"id": chat.channel_id, "name": "Web chat"}}
    if e.group is not None:
        associations["group"] = {"id": e.group, "name": GROUP_NAMES[e.group], "description": "",
                                 "routing_type": "intelliassign"}
    if e.agent is not None:
        associations["agent"] = {"id": e.agent}
    return associations
