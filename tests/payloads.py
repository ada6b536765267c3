"""Freshchat events in the shapes of the public documentation (ids are placeholders)."""

from __future__ import annotations

import orjson


def webhook_message(conversation_id: str = "b3f2a7c4-1d5e-4a89-9c7b-2e6f8a0d1c3b", **extra) -> dict:
    """A native `message_create` webhook, as in Freshchat's webhook article."""
    event = {
        "actor": {"actor_type": "user", "actor_id": "7f1c2d3e-0000-4000-8000-000000000001"},
        "action": "message_create",
        "action_time": "2022-11-22T10:55:23.126Z",
        "data": {"message": {
            "message_parts": [{"text": {"content": "Hi, my order has not arrived"}}],
            "app_id": "a1b2c3d4-0000-4000-8000-00000000000a",
            "actor_id": "7f1c2d3e-0000-4000-8000-000000000001",
            "id": "m-0001", "channel_id": "c-0001", "conversation_id": conversation_id,
            "message_type": "normal", "actor_type": "user",
            "created_time": "2022-11-22T10:55:23.126Z",
            "interaction_id": "453443-1669114523126",
            "user_id": "7f1c2d3e-0000-4000-8000-000000000001",
        }},
    }
    event.update(extra)
    return event


def app_message(conversation_id: str = "conv-0001") -> dict:
    """A Marketplace app `onMessageCreate` product event."""
    return {
        "account_id": "123456", "domain": "acme.freshchat.com", "event": "onMessageCreate",
        "region": "US", "timestamp": 1714986001, "version": "1.0.0", "iparams": {},
        "data": {"actor": {"id": "u-1", "type": "user"},
                 "message": {"id": "m-1", "conversation_id": conversation_id, "actor_type": "user",
                             "actor_id": "u-1", "message_type": "normal",
                             "created_time": "2024-05-06T09:00:01.180Z",
                             "message_parts": [{"text": {"content": "Hello"}}]},
                 "associations": {"group": {"id": "g-support", "name": "Customer Support"}}},
    }


def dumps(event) -> bytes:
    return orjson.dumps(event)


def user_messages(count: int, start: int = 0) -> list[dict]:
    """`count` native message_create webhooks, one per conversation c-<n>: an array body's worth."""
    return [{"actor": {"actor_type": "user"}, "action": "message_create", "action_time": "2024-05-06T09:00:00.000Z",
             "data": {"message": {"id": f"m{i}", "conversation_id": f"c-{i}", "actor_type": "user"}}}
            for i in range(start, start + count)]
