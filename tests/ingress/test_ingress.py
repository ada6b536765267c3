"""The ingress against the real embedded broker, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import hashlib

import httpx
import orjson
import pytest

from tests.kafka_records import read_topic, sign, values
from tests.payloads import app_message, dumps, webhook_message
from tests.schemas import assert_valid

pytestmark = pytest.mark.integration
JSON = {"Content-Type": "application/json"}


def post(ingress, name, body: bytes, headers: dict) -> httpx.Response:
    return httpx.post(f"{ingress.url}/webhooks/freshchat/{name}", content=body, headers=headers, timeout=30)


def test_signed_webhook_and_app_event_land_on_raw_topic_unchanged(loop_thread, settings, ingress, add_integration, rsa_key):
    app_key = add_integration("acme-eu", signed=True)
    webhook_body = dumps(webhook_message("conv-sig")) + b"\n"
    signed = post(ingress, "acme-eu", webhook_body, {**JSON, "X-Freshchat-Signature": sign(rsa_key, webhook_body)})
    app_body = dumps(app_message("conv-app"))
    keyed = post(ingress, "acme-eu", app_body, {**JSON, "Authorization": f"Bearer {app_key}"})
    retried = post(ingress, "acme-eu", webhook_body, {**JSON, "X-Retry-Count": "1",
                                                       "X-Freshchat-Signature": sign(rsa_key, webhook_body)})

    assert (signed.status_code, keyed.status_code, retried.status_code) == (202, 202, 202)
    assert signed.json()["accepted"] == 1
    assert retried.json()["event_ids"] == signed.json()["event_ids"]
    assert signed.json()["event_ids"] == [hashlib.sha256(b"acme-eu" + webhook_body).hexdigest()]
    records = loop_thread.run(read_topic(settings, settings.raw_topic, 3))
    by_key = {}
    for record in records:
        by_key.setdefault(record.key, []).append(record)
    assert sorted(by_key) == [b"acme-eu:conv-app", b"acme-eu:conv-sig"]
    webhook_records = by_key[b"acme-eu:conv-sig"]
    assert [r.value.endswith(b'"payload":' + webhook_body + b"}") for r in webhook_records] == [True, True]
    envelopes = values(webhook_records)
    assert [e["retry_count"] for e in envelopes] == [0, 1]
    assert {e["event_id"] for e in envelopes} == set(signed.json()["event_ids"])
    for envelope in values(records):
        assert_valid("raw-event", envelope)
    app_envelope = values(by_key[b"acme-eu:conv-app"])[0]
    assert app_envelope["format"] == "app" and app_envelope["payload"] == orjson.loads(app_body)
    assert app_envelope["received_at"].endswith("Z") and app_envelope["v"] == 1


def test_array_body_is_all_or_nothing(loop_thread, settings, ingress, add_integration):
    key = add_integration("acme-array")
    auth = {**JSON, "Authorization": f"Bearer {key}"}
    good = post(ingress, "acme-array", orjson.dumps([app_message("c1"), webhook_message("c2")]), auth)
    bad = post(ingress, "acme-array", orjson.dumps([app_message("c3"), {"action": "message_create"}]), auth)
    assert good.status_code == 202 and good.json()["accepted"] == 2
    assert len(set(good.json()["event_ids"])) == 2
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_event"
    assert "element 1" in bad.json()["message"]
    records = loop_thread.run(read_topic(settings, settings.raw_topic, 3, timeout=3))
    assert sorted(r.key for r in records) == [b"acme-array:c1", b"acme-array:c2"]


def test_every_bad_credential_gets_the_same_401(ingress, add_integration, rsa_key):
    add_integration("acme-a", signed=True)
    key_b = add_integration("acme-b")
    body = dumps(webhook_message())
    signature = sign(rsa_key, body)
    attempts = {
        "wrong key": post(ingress, "acme-a", body, {**JSON, "Authorization": "Bearer fsk_not-a-key"}),
        "wrong signature": post(ingress, "acme-a", body, {**JSON, "X-Freshchat-Signature": sign(rsa_key, body + b" ")}),
        "body changed after signing": post(ingress, "acme-a", body.replace(b"Hi", b"Ho"),
                                           {**JSON, "X-Freshchat-Signature": signature}),
        "unknown integration": post(ingress, "nobody", body, {**JSON, "X-Freshchat-Signature": signature}),
        "B's key on A's URL": post(ingress, "acme-a", body, {**JSON, "Authorization": f"Bearer {key_b}"}),
        "no credentials": post(ingress, "acme-a", body, JSON),
        "signature on an integration without a webhook key": post(
            ingress, "acme-b", body, {**JSON, "X-Freshchat-Signature": signature}),
    }
    statuses = {name: r.status_code for name, r in attempts.items()}
    assert set(statuses.values()) == {401}, statuses
    assert len({r.content for r in attempts.values()}) == 1
    assert attempts["wrong key"].json()["error"] == "unauthorized"


@pytest.mark.parametrize("body, headers, status, code, hint", [
    (b'{"action": "message_create",', JSON, 400, "invalid_json", "not valid JSON"),
    (b"[1, 2]", JSON, 400, "invalid_event", "must be a JSON object"),
    (dumps({"action": "conversation_resolution", "data": {"resolve": {}}}), JSON, 400, "invalid_event",
     "data.resolve.conversation.conversation_id"),
    (dumps(app_message()), {"Content-Type": "text/plain"}, 415, "unsupported_media_type", "application/json"),
    (b"[" + b" " * (2 * 1024 * 1024) + b"]", JSON, 413, "payload_too_large", "fewer events"),
])
def test_bad_input_gets_its_code_and_goes_to_the_dlq(loop_thread, settings, ingress, add_integration,
                                                      body, headers, status, code, hint):
    key = add_integration("acme-bad")
    response = post(ingress, "acme-bad", body, {**headers, "Authorization": f"Bearer {key}"})
    assert response.status_code == status
    assert response.json()["error"] == code
    assert hint in response.json()["message"]
    dead = values(loop_thread.run(read_topic(settings, settings.dlq_topic, 1)))
    assert [(d["integration"], d["error"]) for d in dead] == [("acme-bad", code)]
    assert_valid("dlq-event", dead[0])
    if status != 413:
        assert dead[0]["body_base64"] is not None


def test_unauthenticated_bad_input_is_not_dead_lettered(loop_thread, settings, ingress):
    response = post(ingress, "ghost", b"not json", JSON)
    assert response.status_code == 401
    assert loop_thread.run(read_topic(settings, settings.dlq_topic, 1, timeout=1)) == []


def test_health_ready_and_metrics(ingress, add_integration):
    key = add_integration("acme-metrics")
    post(ingress, "acme-metrics", dumps(app_message()), {**JSON, "Authorization": f"Bearer {key}"})
    post(ingress, "acme-metrics", dumps(app_message()), {**JSON, "Authorization": "Bearer fsk_wrong"})
    assert httpx.get(f"{ingress.url}/healthz").status_code == 200
    ready = httpx.get(f"{ingress.url}/readyz")
    assert ready.status_code == 200 and ready.json()["broker_reachable"] is True
    text = httpx.get(f"{ingress.url}/metrics").text
    assert 'freshstream_ingress_requests_total{integration="acme-metrics",status="202"} 1.0' in text
    assert 'freshstream_ingress_auth_failures_total{integration="acme-metrics"} 1.0' in text
    assert "freshstream_ingress_produce_seconds_count 1.0" in text


def test_unknown_paths_and_methods_get_json_errors_like_the_rest(ingress):
    missing = httpx.get(f"{ingress.url}/webhooks/freshchat", timeout=10)
    wrong_method = httpx.get(f"{ingress.url}/webhooks/freshchat/acme", timeout=10)
    post_health = httpx.post(f"{ingress.url}/healthz", timeout=10)

    assert (missing.status_code, missing.headers["Content-Type"]) == (404, "application/json")
    assert missing.json() == {"error": "not_found", "message": (
        "no such endpoint: events are posted to /webhooks/freshchat/<integration>; "
        "/healthz, /readyz and /metrics answer GET")}
    assert (wrong_method.status_code, wrong_method.headers["Allow"]) == (405, "POST")
    assert wrong_method.json() == {"error": "method_not_allowed",
                                   "message": "GET is not allowed on this path; use POST"}
    assert (post_health.status_code, post_health.headers["Allow"]) == (405, "GET, HEAD")
    assert post_health.json()["error"] == "method_not_allowed"
