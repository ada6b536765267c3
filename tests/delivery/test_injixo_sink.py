"""`freshstream deliver injixo` against a fake injixo: the WFM's sums equal the final contacts', through
revisions, moves, retractions, a SIGKILL of the sink, 500s and 429s (docs/delivery.md)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from connectors.integrations.records import load_cipher, new_ingress_key, new_integration
from connectors.kafka.topics import ensure_topics
from tests.contact_records import contact, key, retraction
from tests.delivery_sums import expected_sums
from tests.kafka_records import put_integration, wait_until
from tests.processes import InjixoSinkProcess

pytestmark = pytest.mark.integration


def configure(loop_thread, settings, name: str, configuration_id: str, api_key: str) -> None:
    """An integration that delivers to injixo, put straight on the integrations topic."""
    cipher = load_cipher(settings)
    record = new_integration(name, "acme.freshchat.com", new_ingress_key())
    loop_thread.run(put_integration(settings, record.with_injixo(configuration_id,
                                                                   cipher.encrypt(api_key.encode()).decode())))


async def write(settings, records: list[dict]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all")
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(settings.contacts_topic, _bytes(r), key=key(r)) for r in records])
    finally:
        await producer.stop()


def _bytes(record: dict) -> bytes:
    import orjson
    return orjson.dumps(record)


def history(n: int, integration: str = "acme") -> list[dict]:
    """n contacts in two queues as the worker writes them: some revised, some moved to the other queue
    (retracted under the old key, the next revision under the new), some retracted, some written twice."""
    records = []
    for i in range(n):
        conversation, queue = f"c{i:03d}", ("Support" if i % 2 else "Sales")
        current = contact(conversation, 1, queue, "2024-05-06T09:10:00.000Z", integration=integration)
        current["started_at"] = f"2024-05-06T09:{(i * 7) % 60:02d}:00.000Z"
        records.append(current)
        if i % 5 == 1:  # revised: a longer handle time
            current = {**current, "revision": current["revision"] + 1, "duration_seconds": 900.0}
            records.append(current)
        if i % 7 == 3:  # moved to the other queue
            other = "Sales" if current["queue"] == "Support" else "Support"
            records.append(retraction(conversation, current["revision"] + 1, current["queue"],
                                      integration=integration))
            current = {**current, "revision": current["revision"] + 2, "queue": other,
                       "group_id": f"g-{other.lower()}"}
            records.append(current)
        if i % 11 == 4:  # turned out not to exist
            records.append(retraction(conversation, current["revision"] + 1, current["queue"],
                                      integration=integration))
        if i % 13 == 5:
            records.append(current)  # written twice
    return records


def test_revisions_a_sink_kill_500s_and_429s_leave_injixo_with_the_final_contacts_sums(
        loop_thread, settings, fake_injixo, tmp_path):
    settings = settings.replace(delivery_batch_size=7, delivery_linger_seconds=0.05)
    loop_thread.run(ensure_topics(settings))
    api_key = fake_injixo.add_key("cfg-acme")
    configure(loop_thread, settings, "acme", "cfg-acme", api_key)
    records = history(120)
    first = [r for r in records if r["revision"] == 1]
    later = [r for r in records if r["revision"] > 1]  # revisions of contacts delivered already: corrections
    loop_thread.run(write(settings, first))
    expected = expected_sums(records, {"acme": "cfg-acme"})
    fake_injixo.slow = 0.05  # requests in the air when the kill comes
    sink = InjixoSinkProcess(settings, tmp_path, fake_injixo.url).start()
    try:
        wait_until(lambda: len(fake_injixo.answered(201)) >= 3, timeout=60, what="some batches delivered")
        sink.kill()
        assert fake_injixo.sums() != expected_sums(first, {"acme": "cfg-acme"}), \
            "all was delivered before the kill: it proves nothing"
        loop_thread.run(write(settings, later))
        fake_injixo.slow = 0
        fake_injixo.fail_next(3, 500)
        fake_injixo.fail_next(2, 429, retry_after=1)
        sink = InjixoSinkProcess(settings, tmp_path, fake_injixo.url, name="deliver-injixo-2").start()
        wait_until(lambda: fake_injixo.sums() == expected, timeout=90, interval=0.2,
                   what=f"injixo's sums equal the final contacts' (log {sink.log_path})")
        assert fake_injixo.answered(500) and fake_injixo.answered(429)
        assert fake_injixo.reused_keys == 0  # an idempotency key always came with the same rows
        assert any(row["properties"]["offered"] < 0 for row in fake_injixo.rows), "no correction was posted"
    finally:
        sink.stop()


def test_a_revoked_key_shows_delivery_failing_stops_posting_and_a_new_key_resumes_without_a_gap(
        loop_thread, settings, fake_injixo, tmp_path):
    import httpx
    import orjson

    from tests.cli.test_integration_lifecycle import cli

    loop_thread.run(ensure_topics(settings))
    old_key = fake_injixo.add_key("cfg-acme")
    configure(loop_thread, settings, "acme", "cfg-acme", old_key)
    records = history(40)
    first, second, third = records[:10], records[10:25], records[25:]
    loop_thread.run(write(settings, first))
    sink = InjixoSinkProcess(settings, tmp_path, fake_injixo.url).start()

    def status() -> dict:
        done = cli(settings, "status", "acme", "--json")
        assert done.returncode == 0, done.stderr
        return orjson.loads(done.stdout)[0]

    def backlog() -> float:
        for line in httpx.get(f"{sink.url}/metrics", timeout=5).text.splitlines():
            if line.startswith('freshstream_deliver_backlog_contacts{integration="acme"}'):
                return float(line.split()[-1])
        return 0.0

    try:
        wait_until(lambda: fake_injixo.sums() == expected_sums(first, {"acme": "cfg-acme"}), timeout=60,
                   what="the first contacts delivered")
        fake_injixo.revoke(old_key)
        loop_thread.run(write(settings, second))
        report = wait_until(lambda: (s := status())["problems"] and s, timeout=30, what="a delivery problem")
        assert "delivery_failing" in report["problems"], report
        assert report["delivery"]["state"] == "stopped" and report["delivery"]["last_failure"]["status"] == 401
        assert len(fake_injixo.answered(401)) == 1  # status said so after one refused attempt
        refused = len(fake_injixo.requests)
        waiting = wait_until(backlog, timeout=30, what="a backlog of the contacts written after the 401")
        loop_thread.run(write(settings, third))
        wait_until(lambda: backlog() > waiting, timeout=30, what="the sink read the contacts written later")
        assert len(fake_injixo.requests) == refused, "the sink kept posting with a refused key"

        new_key = fake_injixo.add_key("cfg-acme")
        done = cli(settings, "set-delivery", "acme", "--injixo-configuration-id", "cfg-acme",
                   "--injixo-api-key-env", "INJIXO_KEY", extra_env={"INJIXO_KEY": new_key})
        assert done.returncode == 0, done.stderr
        wait_until(lambda: fake_injixo.sums() == expected_sums(records, {"acme": "cfg-acme"}), timeout=60,
                   what="every contact delivered with the new key, none lost in between")
        wait_until(lambda: status()["delivery"]["state"] == "ok", timeout=30, what="delivery ok again")
    finally:
        sink.stop()
