"""The worker's /metrics carries delivery health: what the injixo sinks publish on the health topic becomes
the delivery_failing status and the backlog gauges an alert can fire on."""

from __future__ import annotations

import time

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors.integrations.records import new_ingress_key, new_integration
from connectors.kafka.clients import make_producer
from streams.domain.integration_health import health_key
from streams.domain.times import utc_now_text
from tests.kafka_records import put_integration, wait_until

pytestmark = pytest.mark.integration


def samples(worker, name: str) -> dict[tuple, float]:
    families = {f.name: f for f in text_string_to_metric_families(worker.metrics())}
    family = families.get(name)
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples} if family else {}


def test_delivery_status_and_backlog_reach_the_worker_metrics(loop_thread, settings, worker):
    delivering = new_integration("acme", "acme.freshchat.com", new_ingress_key()).with_injixo("cfg-1", "enc")
    plain = new_integration("plain", "acme.freshchat.com", new_ingress_key())
    for record in (delivering, plain):
        loop_thread.run(put_integration(settings, record))
    oldest = time.time() - 120
    loop_thread.run(_publish(settings, "acme", {
        "state": "stopped", "backlog": 37, "backlog_oldest_at": utc_now_text(oldest),
        "last_delivered_at": "2027-01-15T08:00:00.000Z", "last_delivered_contact": "c-1",
        "last_failure_at": utc_now_text(), "last_failure_status": 401, "last_failure_error": "unauthorized"}))
    loop_thread.run(_publish(settings, "plain", {"state": "failing", "backlog": 5}))  # not configured: ignored

    wait_until(lambda: samples(worker, "freshstream_integration_status").get(
        (("integration", "acme"), ("status", "delivery_failing"))) == 1.0, timeout=30, interval=0.25,
        what="acme's status delivery_failing on /metrics")
    assert samples(worker, "freshstream_delivery_backlog_contacts") == {(("integration", "acme"),): 37.0}
    age = samples(worker, "freshstream_delivery_backlog_age_seconds")[(("integration", "acme"),)]
    assert 120 <= age < 120 + 60
    assert samples(worker, "freshstream_delivery_last_delivered_timestamp_seconds") == {
        (("integration", "acme"),): 1_800_000_000.0}
    assert samples(worker, "freshstream_integration_status").get(
        (("integration", "plain"), ("status", "delivery_failing"))) == 0.0


async def _publish(settings, integration: str, fields: dict) -> None:
    instance = "test:deliver-injixo:1"
    doc = {"v": 1, "integration": integration, "source": "delivery", "instance": instance, "sink": "injixo",
           "published_at": utc_now_text(), "state": "ok", "url": "https://api.injixo.com",
           "last_delivered_at": None, "last_delivered_contact": None, "delivered_contacts": 0,
           "last_failure_at": None, "last_failure_status": None, "last_failure_error": None,
           "backlog": 0, "backlog_oldest_at": None, **fields}
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(settings.health_topic, orjson.dumps(doc),
                                     key=health_key(integration, "delivery", instance))
    finally:
        await producer.stop()
