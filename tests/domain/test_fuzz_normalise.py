"""Normalisation never crashes: whatever JSON an envelope holds, the answer is an event or a Skip."""

from __future__ import annotations

import copy

from hypothesis import given, settings, strategies as st

from streams.domain.chat import apply
from streams.domain.events import ChatEvent, Skip, normalise
from tests.payloads import app_message, webhook_message

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=25)
KNOWN_KEYS = st.sampled_from(["actor", "action", "action_time", "data", "message", "conversation_id",
                              "conversation", "actor_type", "message_type", "created_time", "event",
                              "timestamp", "changes", "model_changes", "associations", "group", "status",
                              "to_group_id", "assigned_group_id", "message_parts", "msg_parts", "id", "name"])


def envelope(payload, fmt="webhook") -> dict:
    return {"v": 1, "event_id": "e", "integration": "acme", "format": fmt,
            "received_at": "2024-05-06T09:00:00.000Z", "retry_count": 0, "payload": payload}


def check(result) -> None:
    assert isinstance(result, (ChatEvent, Skip))
    if isinstance(result, ChatEvent):
        assert isinstance(result.conversation_id, str) and result.conversation_id
        assert isinstance(result.at, int)
        apply(None, result, 7 * 24 * 3600 * 1000)  # the state machine takes whatever normalise gives


@settings(max_examples=300, deadline=None)
@given(JSON, st.sampled_from(["webhook", "app", None, 3]))
def test_any_json_payload_is_an_event_or_a_skip(payload, fmt):
    check(normalise(envelope(payload, fmt)))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([webhook_message(), app_message()]), st.lists(st.tuples(KNOWN_KEYS, JSON), max_size=6),
       st.randoms())
def test_real_shapes_with_fields_replaced_by_anything_are_an_event_or_a_skip(base, replacements, rnd):
    """Numbers where strings belong, lists where objects belong, missing and extra fields."""
    payload = copy.deepcopy(base)
    for key, value in replacements:
        nodes = [payload]
        node = payload
        while isinstance(node, dict) and node:
            node = node[rnd.choice(sorted(node))]
            if isinstance(node, dict):
                nodes.append(node)
        target = rnd.choice(nodes)
        if rnd.random() < 0.2 and target:
            target.pop(rnd.choice(sorted(target)))
        else:
            target[key] = value
    fmt = "webhook" if "action" in base else "app"
    check(normalise(envelope(payload, fmt)))


def test_deep_nesting_is_an_event_or_a_skip():
    deep = {}
    node = deep
    for _ in range(500):
        node["data"] = {}
        node = node["data"]
    check(normalise(envelope({"action": "message_create", "data": deep})))


def test_a_bug_in_normalise_is_a_counted_skip_not_a_crash(monkeypatch):
    import streams.domain.events as events

    def broken(envelope):
        raise KeyError("a bug")

    monkeypatch.setattr(events, "normalise", broken)
    assert events.normalise_or_skip(envelope({"action": "message_create"})) == Skip("normalise_error")
    assert events.normalise_or_skip([1, 2]) == Skip("unreadable_envelope")
