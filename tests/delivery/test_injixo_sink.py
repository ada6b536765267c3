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
from tests.fake_injixo import fake_injixo  # noqa: F401  (fixture)
from tests.kafka_records import put_integration, read_topic, values, wait_until
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
    loop_thread.run(write(settings, records))
    expected = expected_sums(records, {"acme": "cfg-acme"})
    fake_injixo.slow = 0.05  # requests in the air when the kill comes
    sink = InjixoSinkProcess(settings, tmp_path, fake_injixo.url).start()
    try:
        wait_until(lambda: len(fake_injixo.answered(201)) >= 3, timeout=60, what="some batches delivered")
        sink.kill()
        assert fake_injixo.sums() != expected, "all was delivered before the kill: it proves nothing"
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
