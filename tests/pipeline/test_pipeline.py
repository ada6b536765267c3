"""simulate → ingress → worker → contacts, end to end on the real broker, against the simulator's oracle."""

from __future__ import annotations

import collections
import subprocess
import sys

import orjson
import pytest

from connectors.integrations.records import load_cipher, new_ingress_key, new_integration
from connectors.simulation.scenario import GROUPS, build_scenario
from tests.kafka_records import SECRETS, put_integration, read_topic
from tests.processes import IngressProcess, settings_env
from tests.schemas import assert_valid

pytestmark = pytest.mark.integration
CHATS = 2000


@pytest.fixture
def settings(settings):
    """Kafka libraries at INFO here: at DEBUG they log every wire request, ~100 MB for this test.

    freshstream's own loggers stay at DEBUG, and the child logs are still scanned for secrets.
    """
    return settings.replace(library_log_level="INFO")


def comparable(contacts):
    return sorted(({k: v for k, v in c.items() if k not in ("emitted_at", "revision", "retracted")}
                   for c in contacts), key=lambda c: c["contact_id"])


@pytest.fixture
def acme_key(loop_thread, settings, fake_freshchat):
    """The acme integration, its groups served by a fake Freshchat REST API (webhooks carry only ids).

    Written before the ingress process starts, so it is loaded when that is ready.
    """
    for group in GROUPS:
        fake_freshchat.add_group(group["id"], group["name"])
    key = new_ingress_key()
    SECRETS.add(key)
    api_key_enc = load_cipher(settings).encrypt(fake_freshchat.api_key.encode()).decode()
    loop_thread.run(put_integration(settings, new_integration("acme", fake_freshchat.url, key, api_key_enc=api_key_enc)))
    return key


@pytest.fixture
def ingress(acme_key, settings, tmp_path):
    """The ingress in its own process: 30,000 posts should not share a core with the client."""
    process = IngressProcess(settings, tmp_path).start()
    yield process
    process.stop()


def simulate(settings, ingress, key, seed, expect) -> subprocess.Popen:
    """`freshstream simulate` in its own process, as a user runs it; its output goes to a file."""
    with open(expect.with_suffix(".log"), "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "connectors.cli", "simulate", "--url", ingress.url, "--integration", "acme",
             "--key-env", "ACME_INGRESS_KEY", "--chats", str(CHATS), "--seed", str(seed), "--expect", str(expect),
             "--concurrency", "64"], env={**settings_env(settings), "ACME_INGRESS_KEY": key}, stdout=log, stderr=log)


def finished(process: subprocess.Popen, expect, timeout: float = 300) -> None:
    process.wait(timeout)
    output = expect.with_suffix(".log").read_text(errors="replace")
    assert process.returncode == 0, output[-2000:]
    assert not [s for s in SECRETS if s in output], "a secret reached simulate's output"


def expected_contacts(path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_text().splitlines()]


def test_simulated_traffic_gives_exactly_the_expected_contacts(loop_thread, settings, ingress, acme_key, worker,
                                                               tmp_path):
    finished(simulate(settings, ingress, acme_key, 7, tmp_path / "expected.jsonl"), tmp_path / "expected.jsonl")
    expected = expected_contacts(tmp_path / "expected.jsonl")
    assert comparable(expected) == comparable(build_scenario("acme", CHATS, seed=7).expected)

    records = loop_thread.run(read_topic(settings, settings.contacts_topic, len(expected), timeout=120))
    extra = loop_thread.run(read_topic(settings, settings.contacts_topic, len(expected) + 1, timeout=2))
    contacts = [orjson.loads(r.value) for r in records]
    assert len(extra) == len(expected), "more contacts than the oracle expects"
    assert comparable(contacts) == comparable(expected)
    assert {(c["revision"], c["retracted"]) for c in contacts} == {(1, False)}, "traffic in order needs no revision"
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
