"""Splitting request bodies into events and wrapping them in the raw envelope."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import orjson
import pytest

from streams.domain.envelope import InvalidEvent, InvalidJSON, encode_envelope, event_id, parse_body
from streams.domain.times import format_time, utc_now_text
from tests.payloads import app_message, webhook_message


@pytest.mark.parametrize("event, fmt, conversation", [
    (webhook_message("b3f2a7c4"), "webhook", "b3f2a7c4"),
    ({"action": "conversation_assignment", "data": {"assignment": {"conversation": {"conversation_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0"}}}},
     "webhook", "0f1e2d3c4b5a69788796a5b4c3d2e1f0"),
    ({"action": "conversation_resolution", "data": {"resolve": {"conversation": {"conversation_id": "app_u1_feedback"}}}},
     "webhook", "app_u1_feedback"),
    ({"action": "conversation_reopen", "data": {"reopen": {"conversation": {"conversation_id": 42, "status": "reopen"}}}},
     "webhook", "42"),
    (app_message("conv-9"), "app", "conv-9"),
    ({"event": "onConversationUpdate", "data": {"conversation": {"conversation_id": "c-7"}}}, "app", "c-7"),
    ({"action": "agent_status_change", "data": {"agent": {"id": "a1"}}}, "webhook", None),
    ({"event": "onAppInstall", "data": {}}, "app", None),
])
def test_each_documented_shape_finds_its_conversation(event, fmt, conversation):
    [parsed] = parse_body(orjson.dumps(event))
    assert (parsed.format, parsed.conversation_id) == (fmt, conversation)


@pytest.mark.parametrize("body, error, phrase", [
    (b"", InvalidJSON, "not valid JSON"),
    (b"\xff\xfe{}", InvalidJSON, "not valid JSON"),
    (b"[]", InvalidEvent, "array is empty"),
    (b'"text"', InvalidEvent, "not a bare a string"),
    (b'{"data": {}}', InvalidEvent, "neither an \"action\""),
    (b'{"action": "message_create", "data": {"message": {"conversation_id": ""}}}', InvalidEvent, "it is a string"),
    (b'{"action": "message_create", "data": {"message": {"conversation_id": true}}}', InvalidEvent, "it is a boolean"),
    (b'{"event": "onMessageCreate", "data": []}', InvalidEvent, "data.message.conversation_id"),
    (b'[{"event": "onAppInstall"}, 3]', InvalidEvent, "element 1 of the array"),
])
def test_unusable_bodies_say_what_to_fix(body, error, phrase):
    with pytest.raises(error) as caught:
        parse_body(body)
    assert phrase in str(caught.value)


def test_single_object_payload_is_the_request_bytes():
    body = b'{ "event": "onAppInstall",\n  "data": {} }\n'
    [parsed] = parse_body(body)
    assert parsed.payload is body


def test_event_id_is_sha256_of_integration_and_body_and_stable():
    body = orjson.dumps(webhook_message())
    assert event_id("acme", body) == hashlib.sha256(b"acme" + body).hexdigest()
    assert event_id("acme", body) == event_id("acme", body)
    assert event_id("other", body) != event_id("acme", body)
    assert event_id("acme", body, 0) != event_id("acme", body, 1)


def test_envelope_splices_payload_verbatim():
    payload = b'{"event": "onAppInstall",  "n": 1.50}'
    encoded = encode_envelope(event_id="e1", integration="acme", received_at="2024-05-06T09:00:01.180Z",
                              fmt="app", retry_count=2, payload=payload)
    assert encoded.endswith(b'"payload":' + payload + b"}")
    assert orjson.loads(encoded) == {"v": 1, "event_id": "e1", "integration": "acme",
                                     "received_at": "2024-05-06T09:00:01.180Z", "format": "app",
                                     "retry_count": 2, "payload": {"event": "onAppInstall", "n": 1.5}}


def test_times_are_utc_milliseconds_with_z():
    moment = datetime(2024, 5, 6, 9, 0, 1, 180999, tzinfo=timezone.utc)
    assert format_time(moment) == "2024-05-06T09:00:01.180Z"


def test_fast_clock_text_matches_format_time():
    for now in (1714986001.0, 1714986001.1809, 1714986001.999, 1714986002.0005):
        assert utc_now_text(now) == format_time(datetime.fromtimestamp(now, tz=timezone.utc))
