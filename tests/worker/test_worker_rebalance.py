"""Two workers in one consumer group: partitions are shared, and rebalances lose or repeat nothing."""

from __future__ import annotations

import collections

import httpx
import orjson
import pytest

from tests.kafka_records import read_topic, values, wait_until
from tests.processes import WorkerProcess

pytestmark = pytest.mark.integration


def chat_events(conversation: str, closed: bool) -> list[dict]:
    events = [{"actor": {"actor_type": "user"}, "action": "message_create", "action_time": "2024-05-06T09:00:01.000Z",
               "data": {"message": {"id": "m1", "conversation_id": conversation, "actor_type": "user"}}}]
    if closed:
        events.append({"actor": {"actor_type": "agent"}, "action": "conversation_resolution",
                       "action_time": "2024-05-06T09:05:00.000Z",
                       "data": {"resolve": {"conversation": {"conversation_id": conversation}}}})
    return events


def post(ingress, key, events):
    response = httpx.post(f"{ingress.url}/webhooks/freshchat/acme", content=orjson.dumps(events),
                          headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 202, response.text


def test_two_workers_share_partitions_and_rebalances_lose_nothing(loop_thread, settings, ingress,
                                                                   add_integration, tmp_path):
    key = add_integration("acme")
    first = WorkerProcess(settings, tmp_path, "a").start()
    second = None
    try:
        post(ingress, key, [e for i in range(100) for e in chat_events(f"c-{i:03d}", closed=i % 2 == 0)])
        second = WorkerProcess(settings, tmp_path, "b").start()
        wait_until(lambda: first.ready() and second.ready(), timeout=60, what="both workers ready")
        post(ingress, key, [e for i in range(100, 200) for e in chat_events(f"c-{i:03d}", closed=True)])
        post(ingress, key, [e for i in range(1, 100, 2) for e in chat_events(f"c-{i:03d}", closed=True)[1:]])
        contacts = values(loop_thread.run(read_topic(settings, settings.contacts_topic, 200, timeout=60)))
        worked = [w for w in (first, second) if "freshstream_worker_events_total{" in w.metrics()]
        assert second.stop() == 0
        post(ingress, key, [e for i in range(200, 250) for e in chat_events(f"c-{i:03d}", closed=True)])
        contacts = values(loop_thread.run(read_topic(settings, settings.contacts_topic, 250, timeout=60)))
        settled = loop_thread.run(read_topic(settings, settings.contacts_topic, 251, timeout=3))
    finally:
        first.stop()
        if second:
            second.stop()
    assert len(settled) == 250, "a contact was emitted twice"
    ids = collections.Counter(c["contact_id"] for c in contacts)
    assert sorted(ids) == sorted(f"acme:c-{i:03d}:1" for i in range(250))
    assert [i for i, n in ids.items() if n > 1] == []
    assert len(worked) == 2, "both workers should have processed events"
