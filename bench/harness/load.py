"""The load of the stream benchmarks: chats of native Freshchat webhooks, enveloped as the ingress writes them.

A chat is a user message, an assignment to one of GROUPS, bot/agent/user messages and a
private note in turn, and (unless left open) a resolution; chat i opens i seconds after
chat 0 and takes one event every 20 s, so ~200 chats are open at once. A load holds every
chat's envelopes interleaved in event-time order, keyed `bench:<conversation id>` as
live traffic arrives.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import orjson

from harness.topics import produce
from streams.domain.chat import ChatState, apply
from streams.domain.envelope import conversation_id_of, encode_envelope, event_id
from streams.domain.events import normalise
from streams.domain.times import format_time, ms_to_time, parse_time
from streams.settings import Settings

__all__ = ["INTEGRATION", "GROUPS", "chat_payloads", "build_load", "resolutions", "state_sizes", "put_group_names"]

INTEGRATION = "bench"
GROUPS = {f"g-{n:02d}": f"Queue {n:02d}" for n in range(1, 9)}
AGENTS = [f"a-{n:04d}" for n in range(1, 41)]
APP_ID, CHANNEL_ID = "a1b2c3d4-0000-4000-8000-00000000000a", "c-0001"
BASE_MS = 1_714_953_600_000  # 2024-05-06T00:00:00Z
CHAT_SPACING_MS = 1_000  # a new chat every second ...
EVENT_STEP_MS = 20_000  # ... and one event per chat every 20 s: ~200 chats open at once
# What happens between the first user message + assignment and the resolution, in turn.
MIDDLE = [("bot", "normal"), ("agent", "normal"), ("user", "normal"), ("agent", "private"),
          ("agent", "normal"), ("user", "normal"), ("agent", "normal")]


def conversation_id(index: int) -> str:
    """A UUID-shaped conversation id, like Freshchat's, deterministic per chat index."""
    return str(uuid.UUID(int=(0xB3F2A7C4 << 96) | index))


def _message(conv: str, at: int, n: int, actor: str, message_type: str, actor_id: str, user_id: str) -> dict:
    time_ = ms_to_time(at)
    return {"actor": {"actor_type": actor, "actor_id": actor_id}, "action": "message_create", "action_time": time_,
            "data": {"message": {
                "message_parts": [{"text": {"content": f"message {n} of the chat"}}], "app_id": APP_ID,
                "actor_id": actor_id, "id": f"{conv[-12:]}-m{n}", "channel_id": CHANNEL_ID, "conversation_id": conv,
                "message_type": message_type, "actor_type": actor, "created_time": time_,
                "interaction_id": f"{at}-{n}", "user_id": user_id}}}


def _assignment(conv: str, at: int, group: str, agent: str) -> dict:
    return {"actor": {"actor_type": "system", "actor_id": "intelliassign"}, "action": "conversation_assignment",
            "action_time": ms_to_time(at),
            "data": {"assignment": {
                "assignor": "system", "assignor_id": "intelliassign", "to_agent_id": agent, "to_group_id": group,
                "conversation": {"conversation_id": conv, "app_id": APP_ID, "status": "assigned",
                                 "channel_id": CHANNEL_ID, "assigned_agent_id": agent,
                                 "assigned_group_id": group}}}}


def _resolution(conv: str, at: int, agent: str) -> dict:
    return {"actor": {"actor_type": "agent", "actor_id": agent}, "action": "conversation_resolution",
            "action_time": ms_to_time(at),
            "data": {"resolve": {
                "resolver": "agent", "resolver_id": agent,
                "conversation": {"conversation_id": conv, "app_id": APP_ID, "status": "resolved",
                                 "channel_id": CHANNEL_ID}}}}


def chat_payloads(index: int, count: int, resolve: bool) -> list[tuple[int, dict]]:
    """(event time, native webhook) for one chat: user message, assignment, the middle, resolution."""
    conv, start = conversation_id(index), BASE_MS + index * CHAT_SPACING_MS
    group, agent = list(GROUPS)[index % len(GROUPS)], AGENTS[index % len(AGENTS)]
    user = f"u-{index:08d}"
    ids = {"user": user, "agent": agent, "bot": "freddy-bot"}
    events = [_message(conv, start, 0, "user", "normal", user, user),
              _assignment(conv, start + EVENT_STEP_MS, group, agent)][:count]
    middle = count - len(events) - (1 if resolve else 0)
    for n in range(max(0, middle)):
        actor, message_type = MIDDLE[n % len(MIDDLE)]
        at = start + (n + 2) * EVENT_STEP_MS
        events.append(_message(conv, at, n + 2, actor, message_type, ids[actor], user))
    if resolve:
        events.append(_resolution(conv, start + (count - 1) * EVENT_STEP_MS, agent))
    return [(parse_time(e["action_time"]), e) for e in events]


def envelope(payload: dict, received_at: str) -> tuple[bytes, bytes]:
    """(key, value) exactly as the ingress writes a single-object webhook body."""
    body = orjson.dumps(payload)
    conv = conversation_id_of("webhook", payload["action"], payload)
    value = encode_envelope(event_id=event_id(INTEGRATION, body), integration=INTEGRATION,
                            received_at=received_at, fmt="webhook", retry_count=0, payload=body)
    return f"{INTEGRATION}:{conv}".encode(), value


def build_load(chats: int, per_chat: int, resolve: bool) -> list[tuple[bytes, bytes]]:
    """Every chat's envelopes, interleaved in event-time order as live traffic arrives."""
    timed = [(at, index, n, payload) for index in range(chats)
             for n, (at, payload) in enumerate(chat_payloads(index, per_chat, resolve))]
    timed.sort(key=lambda item: item[:3])
    received_at = format_time(datetime.now(timezone.utc))
    return [envelope(payload, received_at) for _, _, _, payload in timed]


def resolutions(indexes: range) -> list[tuple[bytes, bytes]]:
    """One resolution per chat, an hour after its opening events."""
    received_at = format_time(datetime.now(timezone.utc))
    return [envelope(_resolution(conversation_id(i), BASE_MS + i * CHAT_SPACING_MS + 3_600_000,
                                 AGENTS[i % len(AGENTS)]), received_at) for i in indexes]


def state_sizes(load: list[tuple[bytes, bytes]], sample_chats: int) -> tuple[float, float]:
    """Average bytes of ChatState.dumps() and of the key, over the first chats of a load."""
    states: dict[bytes, ChatState] = {}
    for key, value in load:
        if key in states or len(states) < sample_chats:
            event = normalise(orjson.loads(value))
            states[key], _, _ = apply(states.get(key), event, Settings().chat_expiry_seconds * 1000)
    values = [len(s.dumps()) for s in states.values()]
    return sum(values) / len(values), sum(len(k) for k in states) / len(states)


async def put_group_names(settings: Settings) -> None:
    seen_at = format_time(datetime.now(timezone.utc))
    await produce(settings, settings.groups_topic,
                  [(f"{INTEGRATION}:{gid}".encode(), orjson.dumps({"name": name, "seen_at": seen_at}))
                   for gid, name in GROUPS.items()])
