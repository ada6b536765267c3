"""State survives a worker restart, including the tail of the last changelog batch.

The embedded broker's ListOffsets answers the base offset of the last batch + 1, so
Faust's own recovery stops short of the batch's tail; streams/worker/tables.py reads it.
"""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.kafka_records import read_topic, values, wait_until
from tests.processes import WorkerProcess

pytestmark = pytest.mark.integration
CHATS = 300


def event(action, conversation, seconds, section, body, actor="user"):
    return {"actor": {"actor_type": actor}, "action": action,
            "action_time": f"2024-05-06T09:{seconds // 60:02d}:{seconds % 60:02d}.000Z",
            "data": {section: {**body, "conversation_id": conversation} if section == "message"
                     else {**body, "conversation": {"conversation_id": conversation}}}}


def opening(conversation):
    return [event("message_create", conversation, 1, "message", {"id": "m1", "actor_type": "user"}),
            event("message_create", conversation, 30, "message", {"id": "m2", "actor_type": "agent"}, "agent")]


def closing(conversation):
    return [event("conversation_resolution", conversation, 90, "resolve", {}, "agent")]


def post_batch(ingress, key, events):
    response = httpx.post(f"{ingress.url}/webhooks/freshchat/acme", content=orjson.dumps(events),
                          headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 202, response.text


def applied(worker) -> int:
    total = 0
    for line in worker.metrics().splitlines():
        if line.startswith("freshstream_worker_events_total") and 'verdict="applied"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def test_open_chats_survive_a_restart_after_batched_changelog_writes(loop_thread, settings, ingress,
                                                                       add_integration, tmp_path):
    key = add_integration("acme")
    conversations = [f"conv-{i:04d}" for i in range(CHATS)]
    first = WorkerProcess(settings, tmp_path, "first").start()
    post_batch(ingress, key, [e for c in conversations for e in opening(c)])
    wait_until(lambda: applied(first) == 2 * CHATS, timeout=60, what="the first worker applied every event")
    assert first.stop() == 0

    second = WorkerProcess(settings, tmp_path, "second").start()
    try:
        page = second.metrics()
        assert "freshstream_worker_tables_recovered 1.0" in page
        remaining = [line for line in page.splitlines() if line.startswith("freshstream_worker_recovery_remaining{")]
        assert any("chats-changelog" in line for line in remaining), page
        assert all(float(line.rsplit(" ", 1)[1]) == 0 for line in remaining), remaining
        post_batch(ingress, key, [e for c in conversations for e in closing(c)])
        contacts = values(loop_thread.run(read_topic(settings, settings.contacts_topic, CHATS, timeout=60)))
    finally:
        second.stop()
    assert len(contacts) == CHATS
    lost = [c["conversation_id"] for c in contacts
            if c["started_at"] != "2024-05-06T09:00:01.000Z" or c["messages"]["agent"] != 1]
    assert lost == [], f"{len(lost)} chats lost their state across the restart"
    topped_up = [line for line in second.log_path.read_text().splitlines() if "past the listed end" in line]
    print(f"recovery top-up: {topped_up or 'nothing past the listed end'}")


def test_rocksdb_store_keeps_state_on_disk_across_a_restart(loop_thread, settings, ingress, add_integration, tmp_path):
    settings = settings.replace(worker_store="rocksdb://")
    key = add_integration("acme")
    conversations = [f"conv-{i:04d}" for i in range(50)]
    first = WorkerProcess(settings, tmp_path, "rocks-first").start()
    post_batch(ingress, key, [e for c in conversations for e in opening(c)])
    wait_until(lambda: applied(first) == 2 * len(conversations), timeout=60, what="the first worker applied every event")
    assert first.stop() == 0
    assert list((tmp_path / "faust").rglob("chats-*.db")), "no RocksDB files were written"

    second = WorkerProcess(settings, tmp_path, "rocks-second").start()
    try:
        post_batch(ingress, key, [e for c in conversations for e in closing(c)])
        contacts = values(loop_thread.run(read_topic(settings, settings.contacts_topic, len(conversations), timeout=60)))
    finally:
        second.stop()
    assert sorted(c["conversation_id"] for c in contacts) == conversations
    assert {c["started_at"] for c in contacts} == {"2024-05-06T09:00:01.000Z"}
