"""The ingress when Kafka pauses or dies: 503 with Retry-After, never a 202 for an unwritten event."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from connectors.ingress.service import IngressService
from connectors.integrations.records import new_ingress_key, new_integration
from connectors.kafka.broker import EmbeddedBroker, free_port
from tests.conftest import test_settings
from tests.kafka_records import SECRETS, put_integration, read_topic, wait_until
from tests.payloads import app_message, dumps

pytestmark = pytest.mark.integration


@pytest.fixture
def own_broker(loop_thread, tmp_path):
    """A broker this test may pause and kill without disturbing the others."""
    port = free_port()
    settings = test_settings(tmp_path, port, produce_timeout=2.0)
    broker = EmbeddedBroker(settings.replace(kafka_bootstrap=""), port)
    loop_thread.run(broker.start())
    service = IngressService(settings, "127.0.0.1", 0)
    loop_thread.run(service.start())
    key = new_ingress_key()
    SECRETS.add(key)
    loop_thread.run(put_integration(settings, new_integration("acme-f", "acme.freshchat.com", key)))
    wait_until(lambda: service.registry.get("acme-f"), what="integration loaded")
    yield settings, broker, service, key
    if broker.process and broker.process.poll() is None:
        os.kill(broker.process.pid, signal.SIGCONT)
    loop_thread.run(service.stop())
    loop_thread.run(broker.stop())


def post(service, key, conversation_id):
    return httpx.post(f"{service.url}/webhooks/freshchat/acme-f", content=dumps(app_message(conversation_id)),
                      headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"}, timeout=30)


def test_paused_broker_gets_503_then_recovers_without_restart(loop_thread, own_broker):
    settings, broker, service, key = own_broker
    assert post(service, key, "before").status_code == 202
    os.kill(broker.process.pid, signal.SIGSTOP)
    started = time.monotonic()
    paused = post(service, key, "during")
    elapsed = time.monotonic() - started
    os.kill(broker.process.pid, signal.SIGCONT)

    assert paused.status_code == 503
    assert paused.json()["error"] == "broker_unavailable"
    assert paused.headers["Retry-After"] == str(settings.retry_after_seconds)
    assert elapsed < settings.produce_timeout + 1.5
    after = wait_until(lambda: (r := post(service, key, "after")).status_code == 202 and r, timeout=20,
                       what="a 202 after the broker resumed")
    assert after.json()["accepted"] == 1
    keys = {r.key for r in loop_thread.run(read_topic(settings, settings.raw_topic, 3))}
    assert {b"acme-f:before", b"acme-f:after"} <= keys


def test_stopped_broker_gets_503_then_a_new_broker_is_used_without_restart(loop_thread, own_broker):
    settings, broker, service, key = own_broker
    loop_thread.run(broker.stop())
    down = post(service, key, "while-down")
    assert down.status_code == 503 and "Retry-After" in down.headers

    loop_thread.run(broker.start())
    wait_until(lambda: post(service, key, "back").status_code == 202, timeout=30,
               what="a 202 from the restarted broker")
    records = loop_thread.run(read_topic(settings, settings.raw_topic, 1))
    # The 503'd event may still land once the broker is back: the sender retries it with
    # the same body, so the same event_id, and the worker drops the duplicate.
    assert b"acme-f:back" in {r.key for r in records}
