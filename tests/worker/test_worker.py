"""The worker on the real broker: documented Freshchat shapes in, contacts out."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.kafka_records import read_topic, values
from tests.schemas import assert_valid

pytestmark = pytest.mark.integration

CONV = "3b1e6f2a-7d4c-4e8b-9a1f-0c2d3e4f5a6b"


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a socket listening on port, from /proc/net/tcp{,6} (no ss, no psutil)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                local, state = row.split()[1], row.split()[3]
                address, _, hex_port = local.partition(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.add(address)
    return found


def test_the_worker_web_server_listens_on_loopback_only(worker):
    assert httpx.get(f"{worker.url}/metrics", timeout=5).status_code == 200
    assert listening_addresses(worker.port) == {"0100007F"}  # 127.0.0.1, little-endian hex


def test_the_worker_times_its_timers(worker):
    import time

    deadline = time.monotonic() + 30
    while True:
        text = worker.metrics()
        if all(f'freshstream_worker_timer_seconds_count{{timer="{name}"}}' in text
               for name in ("resend_unsent", "release_pending")) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert 'freshstream_worker_timer_seconds_bucket{le="0.05",timer="release_pending"}' in text
    assert 'freshstream_worker_timer_longest_seconds{timer="resend_unsent"}' in text  # the pass after recovery


def webhook(action, time, section, body, actor="agent"):
    return {"actor": {"actor_type": actor, "actor_id": "a-2222"}, "action": action, "action_time": time,
            "data": {section: body}}


def message(time, actor, text="hi", message_type="normal", mid=None):
    return webhook("message_create", time, "message", {
        "message_parts": [{"text": {"content": text}}], "app_id": "app-1", "actor_id": f"{actor}-id",
        "id": mid or f"m-{time}", "channel_id": "ch-1", "conversation_id": CONV, "message_type": message_type,
        "actor_type": actor, "created_time": time, "interaction_id": "453443-1714986001180",
        "user_id": "u-1"}, actor)


DOCUMENTED_CHAT = [
    message("2024-05-06T09:00:01.180Z", "user", "Where is my order?"),
    webhook("conversation_assignment", "2024-05-06T09:00:05.000Z", "assignment", {
        "assignor": "system", "assignor_id": "sys", "to_agent_id": "a-2222", "to_group_id": "g-support",
        "from_agent_id": None, "from_group_id": None,
        "conversation": {"conversation_id": CONV, "app_id": "app-1", "status": "assigned", "channel_id": "ch-1",
                         "assigned_agent_id": "a-2222", "assigned_group_id": "g-support"}}, "system"),
    message("2024-05-06T09:02:30.000Z", "agent", "Let me check"),
    message("2024-05-06T09:03:00.000Z", "agent", "note to self", message_type="private"),
    webhook("conversation_resolution", "2024-05-06T09:10:00.000Z", "resolve", {
        "resolver": "agent", "resolver_id": "a-2222",
        "conversation": {"conversation_id": CONV, "app_id": "app-1", "status": "resolved", "channel_id": "ch-1"}}),
    webhook("conversation_reopen", "2024-05-07T08:00:00.000Z", "reopen", {
        "reopener": "user", "reopener_id": "u-1", "interaction_id": "453443-1715068800000",
        "conversation": {"conversation_id": CONV, "status": "reopen"}}, "user"),
    message("2024-05-07T08:00:00.500Z", "user", "still missing"),
    message("2024-05-07T08:10:00.000Z", "agent", "found it"),
    webhook("conversation_resolution", "2024-05-07T08:14:40.000Z", "resolve", {
        "resolver": "agent", "resolver_id": "a-2222",
        "conversation": {"conversation_id": CONV, "status": "resolved"}}),
]


def post_all(ingress, key, events):
    for event in events:
        response = httpx.post(f"{ingress.url}/webhooks/freshchat/acme", content=orjson.dumps(event),
                              headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        assert response.status_code == 202, response.text


def put_group(loop_thread, settings, integration, group_id, name):
    from connectors.kafka.clients import make_producer

    async def put():
        producer = make_producer(settings)
        await producer.start()
        try:
            await producer.send_and_wait(settings.groups_topic, orjson.dumps({"name": name, "seen_at": "x"}),
                                         key=f"{integration}:{group_id}".encode())
        finally:
            await producer.stop()
    loop_thread.run(put())


def test_documented_webhook_shapes_give_two_cycles(loop_thread, settings, ingress, add_integration, worker):
    put_group(loop_thread, settings, "acme", "g-support", "Customer Support")
    key = add_integration("acme")
    post_all(ingress, key, DOCUMENTED_CHAT + DOCUMENTED_CHAT[:2])  # the tail: retries, changing nothing
    contacts = values(loop_thread.run(read_topic(settings, settings.contacts_topic, 2, timeout=30)))
    assert [c["contact_id"] for c in contacts] == [f"acme:{CONV}:1", f"acme:{CONV}:2"]
    first, second = contacts
    assert first["queue"] == second["queue"] == "Customer Support"
    assert (first["started_at"], first["first_response_at"], first["resolved_at"]) == (
        "2024-05-06T09:00:01.180Z", "2024-05-06T09:02:30.000Z", "2024-05-06T09:10:00.000Z")
    assert first["wait_seconds"] == 148.82 and first["messages"]["private"] == 1
    assert second["started_at"] == "2024-05-07T08:00:00.000Z" and second["handled"]
    for contact in contacts:
        assert_valid("contact", contact)
    records = loop_thread.run(read_topic(settings, settings.contacts_topic, 2, timeout=1))
    assert {r.key for r in records} == {b"acme/Customer Support"} and len({r.partition for r in records}) == 1
    # each cycle counts in the 15 minutes it started in, on the contacts' partition
    intervals = loop_thread.run(read_topic(settings, settings.intervals_topic, 2, timeout=30))
    assert sorted(r.key for r in intervals) == [b"acme/Customer Support/2024-05-06T09:00:00.000Z",
                                                b"acme/Customer Support/2024-05-07T08:00:00.000Z"]
    assert {r.partition for r in intervals} == {records[0].partition}
    day_one = min(values(intervals), key=lambda v: v["interval_start"])
    assert_valid("interval", day_one)
    assert {k: day_one[k] for k in ("revision", "contacts", "offered", "handled", "unanswered", "handle_seconds_total",
                                    "answer_seconds_total", "max_wait_seconds", "within_sla", "group_ids")} == {
        "revision": 1, "contacts": 1, "offered": 1, "handled": 1, "unanswered": 0, "handle_seconds_total": 598.82,
        "answer_seconds_total": 148.82, "max_wait_seconds": 148.82, "within_sla": 0, "group_ids": ["g-support"]}


def app_event(event, timestamp, data):
    return {"account_id": "1", "domain": "acme.freshchat.com", "event": event, "region": "US",
            "timestamp": timestamp, "version": "1.0.0", "iparams": {}, "data": data}


def test_app_events_name_their_queue(loop_thread, settings, ingress, add_integration, worker):
    key = add_integration("acme")
    conversation = {"conversation_id": "c-app", "app_id": "app-1", "status": "new", "assigned_group_id": None,
                    "created_time": "2024-05-06T09:00:00.000Z"}
    group = {"id": "g-bill", "name": "Facturation — Montréal", "routing_type": "round_robin"}
    post_all(ingress, key, [
        app_event("onConversationCreate", 1714986000, {"actor": {"type": "user", "id": "u"}, "conversation": conversation}),
        app_event("onMessageCreate", 1714986001, {
            "actor": {"type": "user", "id": "u"}, "associations": {"group": group},
            "message": {"id": "m1", "conversation_id": "c-app", "actor_type": "user", "actor_id": "u",
                        "message_type": "normal", "created_time": "2024-05-06T09:00:01.000Z"}}),
        app_event("onConversationUpdate", 1714986300500, {
            "actor": {"type": "agent", "id": "a1", "sub_entity": None},
            "associations": {"group": group},
            "conversation": {**conversation, "status": "resolved", "assigned_group_id": "g-bill"},
            "changes": {"model_changes": {"status": ["assigned", "resolved"]}}}),
    ])
    [contact] = values(loop_thread.run(read_topic(settings, settings.contacts_topic, 1, timeout=30)))
    assert (contact["queue"], contact["group_id"], contact["resolved_at"]) == (
        "Facturation — Montréal", "g-bill", "2024-05-06T09:05:00.500Z")
    assert not contact["handled"] and contact["offered"]
    names = values(loop_thread.run(read_topic(settings, settings.groups_topic, 1, timeout=10)))
    assert names[0]["name"] == "Facturation — Montréal"


def test_unknown_group_waits_for_its_name_then_falls_back(loop_thread, settings, ingress, add_integration, worker):
    key = add_integration("acme")

    def chat(conversation, group):
        return [webhook("conversation_assignment", "2024-05-06T09:00:00.000Z", "assignment", {
                    "to_group_id": group, "conversation": {"conversation_id": conversation}}, "system"),
                webhook("conversation_resolution", "2024-05-06T09:01:00.000Z", "resolve", {
                    "conversation": {"conversation_id": conversation}})]
    post_all(ingress, key, chat("c-late-name", "g-new") + chat("c-no-name", "g-ghost"))
    put_group(loop_thread, settings, "acme", "g-new", "New Queue")
    contacts = values(loop_thread.run(read_topic(settings, settings.contacts_topic, 2, timeout=30)))
    assert sorted((c["conversation_id"], c["queue"]) for c in contacts) == [
        ("c-late-name", "New Queue"), ("c-no-name", "Undefined_Queue")]
    assert "freshstream_worker_group_name_timeouts_total" in worker.metrics()
