"""Normalising raw envelopes of every documented shape into chat events."""

from __future__ import annotations

import pytest

from streams.domain.events import ChatEvent, Skip, normalise
from streams.domain.times import parse_time
from tests.payloads import app_message, webhook_message


def envelope(payload, fmt="webhook", received_at="2024-05-06T09:00:00.000Z"):
    return {"v": 1, "event_id": "e", "integration": "acme", "received_at": received_at,
            "format": fmt, "retry_count": 0, "payload": payload}


def test_webhook_message_create_as_documented():
    event = normalise(envelope(webhook_message("conv-1")))
    assert event == ChatEvent(integration="acme", conversation_id="conv-1", kind="message",
                              at=parse_time("2022-11-22T10:55:23.126Z"), actor="user", message_type="normal",
                              message_id="m-0001", actor_id="7f1c2d3e-0000-4000-8000-000000000001",
                              received_at=parse_time("2024-05-06T09:00:00.000Z"))


def test_2018_message_without_message_type_and_with_msg_parts():
    payload = webhook_message("conv-2")
    message = payload["data"]["message"]
    del message["message_type"], message["message_parts"]
    message["msg_parts"] = [{"properties": {"text": "hi"}, "part_type": "text"}]
    event = normalise(envelope(payload))
    assert (event.kind, event.message_type) == ("message", "normal")


def test_assignment_carries_group_and_agent():
    payload = {"actor": {"actor_type": "agent", "actor_id": "a-1"}, "action": "conversation_assignment",
               "action_time": "2024-05-06T09:01:00.000Z",
               "data": {"assignment": {"assignor": "agent", "to_agent_id": "a-2", "to_group_id": "g-1",
                                       "conversation": {"conversation_id": "c", "status": "assigned",
                                                        "assigned_group_id": "g-1", "assigned_agent_id": "a-2"}}}}
    event = normalise(envelope(payload))
    assert (event.kind, event.group_id, event.agent_id, event.actor) == ("assign", "g-1", "a-2", "agent")


@pytest.mark.parametrize("status", ["reopened", "reopen"])
def test_reopen_both_statuses(status):
    payload = {"actor": {"actor_type": "user"}, "action": "conversation_reopen", "action_time": "2024-05-06T10:00:00Z",
               "data": {"reopen": {"conversation": {"conversation_id": "c", "status": status}}}}
    assert normalise(envelope(payload)).kind == "reopen"


def test_resolution_keeps_actor():
    payload = {"actor": {"actor_type": "system"}, "action": "conversation_resolution",
               "action_time": "2024-05-06T10:00:00Z",
               "data": {"resolve": {"resolver": "system", "conversation": {"conversation_id": "c", "status": "resolved"}}}}
    event = normalise(envelope(payload))
    assert (event.kind, event.actor, event.at) == ("resolve", "system", parse_time("2024-05-06T10:00:00Z"))


def test_app_message_learns_group_name():
    event = normalise(envelope(app_message("conv-9"), fmt="app"))
    assert (event.kind, event.group_id, event.group_name) == ("message", "g-support", "Customer Support")


def app_update(changes, timestamp=1714986001, **conversation):
    return {"event": "onConversationUpdate", "timestamp": timestamp,
            "data": {"actor": {"type": "agent", "id": "a-1"},
                     "conversation": {"conversation_id": "c", **conversation},
                     "changes": {"model_changes": changes}}}


@pytest.mark.parametrize("changes, conversation, kind, status", [
    ({"status": ["assigned", "resolved"]}, {}, "resolve", None),
    ({"status": ["resolved", "reopened"]}, {"reopened_time": "2024-05-06T10:00:00.500Z"}, "reopen", None),
    ({"status": ["new", "deleted"]}, {}, "terminal", "deleted"),
    ({}, {"status": "spam"}, "terminal", "spam"),
    ({"assigned_group_id": [None, "g-2"]}, {"status": "assigned"}, "assign", None),
])
def test_app_updates(changes, conversation, kind, status):
    event = normalise(envelope(app_update(changes, **conversation), fmt="app"))
    assert (event.kind, event.status) == (kind, status)


def test_app_reopen_uses_reopened_time_and_timestamp_units():
    reopen = normalise(envelope(app_update({"status": ["resolved", "reopened"]},
                                           reopened_time="2024-05-06T10:00:00.500Z"), fmt="app"))
    assert reopen.at == parse_time("2024-05-06T10:00:00.500Z")
    seconds = normalise(envelope(app_update({"status": ["a", "resolved"]}, timestamp=1714986001), fmt="app"))
    millis = normalise(envelope(app_update({"status": ["a", "resolved"]}, timestamp=1714986001250), fmt="app"))
    assert (seconds.at, millis.at) == (1714986001000, 1714986001250)


def test_app_create_uses_created_time():
    payload = {"event": "onConversationCreate", "timestamp": 1714986999,
               "data": {"actor": {"type": "user"}, "conversation": {"conversation_id": "c", "status": "new",
                        "created_time": "2024-05-06T09:00:00.000Z", "assigned_group_id": None}}}
    event = normalise(envelope(payload, fmt="app"))
    assert (event.kind, event.at, event.group_id) == ("open", parse_time("2024-05-06T09:00:00Z"), None)


@pytest.mark.parametrize("payload, fmt, reason", [
    ({"action": "agent_status", "data": {}}, "webhook", "unsupported_action"),
    ({"event": "onAppInstall"}, "app", "unsupported_event"),
    ({"action": "message_create", "data": {"message": {}}}, "webhook", "no_conversation_id"),
    ("not an object", "webhook", "no_payload"),
])
def test_unusable_envelopes_are_skipped_with_a_reason(payload, fmt, reason):
    assert normalise(envelope(payload, fmt=fmt)) == Skip(reason)


def test_missing_time_falls_back_to_received_at():
    payload = {"action": "conversation_resolution", "data": {"resolve": {"conversation": {"conversation_id": "c"}}}}
    event = normalise(envelope(payload, received_at="2024-05-06T09:00:00.123Z"))
    assert event.timeless and event.at == parse_time("2024-05-06T09:00:00.123Z")


@pytest.mark.parametrize("junk", [None, [], 3.5, {"conversation_id": {"x": 1}}, True])
def test_wrong_types_never_crash(junk):
    payload = {"action": "message_create", "action_time": junk, "actor": junk,
               "data": {"message": {"conversation_id": "c", "message_type": junk, "actor_type": junk, "id": junk}}}
    event = normalise(envelope(payload))
    assert isinstance(event, (ChatEvent, Skip))


@pytest.mark.parametrize("text", ["2022-11-22T10:55:23.126Z", "2024-02-29T23:59:59.999Z", "2024-05-06T00:00:00.000Z"])
def test_fast_path_times_equal_the_general_parse(text):
    from datetime import datetime
    expected = int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000 + 0.5)
    assert parse_time(text) == expected == parse_time(text.replace("Z", "+00:00"))


def test_contact_times_are_written_exactly_as_format_time_writes_them():
    from datetime import datetime, timedelta, timezone

    from hypothesis import given, strategies as st

    from streams.domain.times import ms_to_time
    from streams.domain.times import format_time

    @given(st.integers(min_value=946_684_800_000, max_value=4_102_444_799_999))
    def check(ms):
        moment = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms)
        assert ms_to_time(ms) == format_time(moment)
        assert parse_time(ms_to_time(ms)) == ms

    check()
