"""simulate → ingress → worker → contacts, end to end on the real broker, against the simulator's oracle."""

from __future__ import annotations

import collections
import time

import orjson
import pytest

from connectors.kafka import make_producer
from connectors.simulate_command import post_scenario
from connectors.simulation import GROUPS, build_scenario
from tests.kafka_records import read_topic, wait_until
from tests.processes import WorkerProcess
from tests.schemas import assert_valid

pytestmark = pytest.mark.integration
CHATS = 2000


async def publish_group_names(settings, integration):
    """What the group poller writes after listing /v2/groups: webhook chats carry only ids."""
    producer = make_producer(settings)
    await producer.start()
    try:
        for group in GROUPS:
            await producer.send(settings.groups_topic, orjson.dumps({"name": group["name"], "seen_at": "x"}),
                                key=f"{integration}:{group['id']}".encode())
        await producer.flush()
    finally:
        await producer.stop()


def comparable(contacts):
    return sorted(({k: v for k, v in c.items() if k != "emitted_at"} for c in contacts),
                  key=lambda c: c["contact_id"])


def test_simulated_traffic_gives_exactly_the_expected_contacts(loop_thread, settings, ingress, add_integration, worker):
    key = add_integration("acme")
    loop_thread.run(publish_group_names(settings, "acme"))
    scenario = build_scenario("acme", CHATS, seed=7)
    summary = loop_thread.run(post_scenario(ingress.url, "acme", key, scenario, concurrency=16), timeout=300)
    assert summary["accepted"] == len(scenario.deliveries)

    records = loop_thread.run(read_topic(settings, settings.contacts_topic, len(scenario.expected), timeout=120))
    extra = loop_thread.run(read_topic(settings, settings.contacts_topic, len(scenario.expected) + 1, timeout=2))
    contacts = [orjson.loads(r.value) for r in records]
    assert len(extra) == len(scenario.expected), "more contacts than the oracle expects"
    assert comparable(contacts) == comparable(scenario.expected)
    for contact in contacts:
        assert_valid("contact", contact)
    partitions_of_key = collections.defaultdict(set)
    for record in records:
        partitions_of_key[record.key].add(record.partition)
    assert all(len(p) == 1 for p in partitions_of_key.values())
    by_partition = collections.defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_partition[record.partition].append(orjson.loads(record.value)["emitted_at"])
    assert all(times == sorted(times) for times in by_partition.values()), "a partition is out of emission order"


def test_sigkill_mid_run_loses_nothing_and_repeats_only_emitted_ids(loop_thread, settings, ingress,
                                                                     add_integration, tmp_path):
    key = add_integration("acme")
    loop_thread.run(publish_group_names(settings, "acme"))
    scenario = build_scenario("acme", CHATS, seed=11)
    expected = {c["contact_id"]: c for c in comparable(scenario.expected)}
    worker = WorkerProcess(settings, tmp_path, "before-kill").start()
    posting = loop_thread.submit(post_scenario(ingress.url, "acme", key, scenario, concurrency=16))
    try:
        wait_until(lambda: len(loop_thread.run(read_topic(settings, settings.contacts_topic, len(expected) // 3,
                                                          timeout=1))) >= len(expected) // 3,
                   timeout=180, interval=0.5, what="a third of the contacts")
        worker.kill()
        killed_at = time.monotonic()
        worker = WorkerProcess(settings, tmp_path, "after-kill").start()
        print(f"worker back {time.monotonic() - killed_at:.1f} s after SIGKILL")
        assert posting.result(300)["accepted"] == len(scenario.deliveries)
        wait_until(lambda: {orjson.loads(r.value)["contact_id"] for r in loop_thread.run(
            read_topic(settings, settings.contacts_topic, 10 * len(expected), timeout=1))} >= set(expected),
            timeout=180, interval=1, what="every expected contact")
    finally:
        worker.stop()
    contacts = [orjson.loads(r.value) for r in loop_thread.run(
        read_topic(settings, settings.contacts_topic, 10 * len(expected), timeout=3))]
    seen = collections.Counter(c["contact_id"] for c in contacts)
    duplicates = sum(n - 1 for n in seen.values())
    print(f"{len(contacts)} contacts for {len(expected)} expected: {duplicates} duplicates after SIGKILL")
    assert set(seen) == set(expected), "missing or unexpected contact ids"
    for contact in contacts:
        assert {k: v for k, v in contact.items() if k != "emitted_at"} == expected[contact["contact_id"]]
