"""The same chats delivered in time order and adversarially give the same final contacts,
end to end through ingress and worker processes, with the worker SIGKILLed mid-run.

Two integrations receive the same simulated chats (same seed): `ordered` in time order,
`adversarial` with `--disorder` (the next cycle before the close that ended the previous
one, events after their own close, whole chats shuffled, resolutions retried while a later
cycle is open). The interval statistics on the intervals topic must equal a group-by of the
final contacts, through the kill too, and so must what `deliver injixo` posted to a fake injixo
for each integration: its sums per queue and 15-minute interval. Folded as a consumer folds them (streams.domain.contact.revision_order), the two
contact streams must be equal field by field but for `integration`, `emitted_at` and
`revision`, and equal to the simulator's expectation; no contact's revision may go down
under any queue's key, across the kill included, and a revision number written twice (a
re-send after the kill) must carry the same contact both times.
"""

from __future__ import annotations

import collections
import csv
import re
import subprocess
import sys

import orjson
import pytest

from connectors.integrations.records import load_cipher, new_ingress_key, new_integration
from connectors.replay import ReplayWindow, replay
from connectors.simulation.poster import post_scenario
from connectors.simulation.scenario import GROUPS, build_scenario
from streams.domain.contact import final_revisions as folded
from streams.domain.times import ms_to_short_time, parse_time
from tests.interval_records import expected_intervals, final_intervals
from tests.kafka_records import SECRETS, put_integration, read_topic, wait_until
from tests.delivery_sums import expected_sums
from tests.processes import IngressProcess, InjixoSinkProcess, WorkerProcess, settings_env

pytestmark = pytest.mark.integration
CHATS = 400
SEED = 11
UNCOMPARED = ("integration", "contact_id", "emitted_at", "revision", "retracted")


@pytest.fixture
def settings(settings):
    """Kafka libraries at INFO: their DEBUG output is wire dumps (freshstream's loggers stay at DEBUG)."""
    return settings.replace(library_log_level="INFO")


@pytest.fixture
def keys(loop_thread, settings, fake_freshchat, fake_injixo):
    """Both integrations, their groups served by a fake Freshchat REST API (webhooks carry only ids),
    each delivering to its own configuration on a fake injixo."""
    for group in GROUPS:
        fake_freshchat.add_group(group["id"], group["name"])
    api_key_enc = load_cipher(settings).encrypt(fake_freshchat.api_key.encode()).decode()
    keys = {}
    for name in ("ordered", "adversarial"):
        keys[name] = new_ingress_key()
        SECRETS.add(keys[name])
        record = new_integration(name, fake_freshchat.url, keys[name], api_key_enc=api_key_enc)
        injixo_key = load_cipher(settings).encrypt(fake_injixo.add_key(f"cfg-{name}").encode()).decode()
        record = record.with_injixo(f"cfg-{name}", injixo_key)
        loop_thread.run(put_integration(settings, record))
    return keys


def comparable(final: dict[str, dict], integration: str) -> dict[str, dict]:
    """The live contacts of one integration, keyed by conversation and cycle."""
    return {f'{c["conversation_id"]}:{c["cycle"]}': {k: v for k, v in c.items() if k not in UNCOMPARED}
            for c in final.values() if c["integration"] == integration and not c["retracted"]}


def test_adversarial_delivery_with_a_worker_kill_gives_the_in_order_contacts(loop_thread, settings, keys, tmp_path,
                                                                            fake_injixo):
    ordered = build_scenario("ordered", CHATS, seed=SEED)
    adversarial = build_scenario("adversarial", CHATS, seed=SEED, disorder=True)
    expected = {f'{c["conversation_id"]}:{c["cycle"]}': {k: v for k, v in c.items() if k not in UNCOMPARED}
                for c in ordered.expected}
    ingress = IngressProcess(settings, tmp_path).start()
    workers = [WorkerProcess(settings, tmp_path, "worker-1").start()]
    sink = InjixoSinkProcess(settings, tmp_path, fake_injixo.url, settle=1.0).start()
    accepted = [0]

    def count(*_):
        accepted[0] += 1

    try:
        loop_thread.run(post_scenario(ingress.url, "ordered", keys["ordered"], ordered, concurrency=32), timeout=180)
        posting = loop_thread.submit(post_scenario(ingress.url, "adversarial", keys["adversarial"], adversarial,
                                                   concurrency=32, on_accepted=count))
        wait_until(lambda: accepted[0] >= len(adversarial.deliveries) // 2, timeout=120, what="half posted")
        workers[0].kill()  # mid-run: its last batches' state may not be in the changelog yet
        workers.append(WorkerProcess(settings, tmp_path, "worker-2").start())
        summary = posting.result(180)
        assert summary["accepted"] == len(adversarial.deliveries)

        records = []

        def settled() -> bool:
            records[:] = loop_thread.run(read_topic(settings, settings.contacts_topic, 10**9, timeout=2))
            final = folded(orjson.loads(r.value) for r in records)
            return all(comparable(final, name) == expected for name in ("ordered", "adversarial"))

        wait_until(settled, timeout=120, interval=1.0, what="both integrations' folded contacts as expected")
        final_contacts = list(folded(orjson.loads(r.value) for r in records).values())
        intervals = {}

        def summed() -> bool:  # the interval statistics, through the same kill, agree with the contacts
            intervals.clear()
            intervals.update(final_intervals(loop_thread.run(
                read_topic(settings, settings.intervals_topic, 10**9, timeout=2))))
            return intervals == expected_intervals(final_contacts, settings)

        wait_until(summed, timeout=60, interval=1.0, what="intervals equal to the group-by of the final contacts")
        assert len({key[:2] for key in intervals}) >= 2 * len(GROUPS) - 2, intervals.keys()  # queues of both
        assert_genesys_file(settings, intervals, "adversarial")
        configurations = {name: f"cfg-{name}" for name in ("ordered", "adversarial")}
        wait_until(lambda: fake_injixo.sums() == expected_sums(final_contacts, configurations), timeout=60,
                   interval=0.5, what=f"injixo's sums equal the final contacts' (log {sink.log_path})")
        assert {key[0] for key in fake_injixo.sums()} == set(configurations.values()) and fake_injixo.reused_keys == 0
    finally:
        sink.stop()
        for process in workers:
            process.stop()
        ingress.stop()

    by_key = collections.defaultdict(list)  # what a consumer of one queue's records sees, in order
    copies = collections.defaultdict(set)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        contact = orjson.loads(record.value)
        by_key[(record.key, contact["contact_id"])].append(contact["revision"])
        copies[(contact["contact_id"], contact["revision"])].add(
            orjson.dumps({k: v for k, v in contact.items() if k != "emitted_at"}, option=orjson.OPT_SORT_KEYS))
    down = {key: revisions for key, revisions in by_key.items() if revisions != sorted(revisions)}
    assert not down, f"a revision went down: {list(down.items())[:5]} (logs in {tmp_path})"
    unlike = [key for key, versions in copies.items() if len(versions) > 1]
    assert not unlike, f"one revision number written with two contents: {unlike[:5]} (logs in {tmp_path})"
    revised = sum(1 for r in records if orjson.loads(r.value)["revision"] > 1)
    assert revised > 0, "the adversarial order produced no revision: it proves nothing"

    target = settings.contacts_topic + "-replay"  # replay from the same raw events agrees with the live run
    window = ReplayWindow(since=0, until=2**62, integration="adversarial")
    report = loop_thread.run(replay(settings, window, target), timeout=180)
    assert report.rebuilt == report.missing == len(expected) and report.differing == 0
    replayed = folded(orjson.loads(r.value) for r in loop_thread.run(read_topic(settings, target, 10**9, timeout=3)))
    assert comparable(replayed, "adversarial") == expected
    assert loop_thread.run(replay(settings, window, settings.contacts_topic), timeout=180).counts() == {
        "rebuilt": len(expected), "present": len(expected), "missing": 0, "differing": 0, "retracted": 0}


def assert_genesys_file(settings, intervals: dict, integration: str) -> None:
    """`intervals --format genesys-csv` over the whole run: parseable, aligned, and the topic's figures."""
    starts = [start for (name, _, start) in intervals if name == integration]
    since, until = ms_to_short_time(min(starts)), ms_to_short_time(max(starts) + 15 * 60_000)
    done = subprocess.run([sys.executable, "-m", "connectors.cli", "intervals", "--since", since, "--until", until,
                           "--integration", integration, "--format", "genesys-csv"], env=settings_env(settings),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(done.stdout.splitlines()))
    assert rows and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:(00|15|30|45):00(\.000)?Z", row["Interval Start UTC Date"])
                        for row in rows), rows[:3]
    offered = {(row["Queue"], parse_time(row["Interval Start UTC Date"])): int(row["Offered"]) for row in rows}
    expected = {(queue, start): figures["offered"] for (name, queue, start), figures in intervals.items()
                if name == integration}
    assert {key: n for key, n in offered.items() if n} == {key: n for key, n in expected.items() if n}
