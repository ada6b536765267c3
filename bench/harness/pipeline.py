"""The whole pipeline as a bench runs it: broker, ingress, workers and a contact watcher, and what they did.

The soak and fault benches (and the fault test, which runs bench/faults.py briefly)
start the same things a user does (`python -m connectors.cli broker|ingress|worker`)
as child processes, post simulated traffic through the ingress with the simulator's
ground truth next to it, and compare what reached the contacts topic with that truth.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import orjson
from aiokafka import TopicPartition

from connectors.freshchat.feed import publish_group_names
from connectors.integrations.records import new_ingress_key, new_integration
from connectors.integrations.registry import IntegrationStore
from connectors.kafka.clients import make_consumer
from connectors.simulation.scenario import GROUPS, Delivery, Scenario, build_scenario
from harness import BENCH
from harness.load import INTEGRATION
from harness.processes import (BenchError, Ingress, Machine, Worker, bench_env, broker_settings, start_broker, tail,
                               tree_cpu, tree_pids, tree_rss, wait_for)
from streams.domain.contact import final_revisions
from streams.settings import Settings

__all__ = ["Pipeline", "ContactLog", "Truth", "segments", "raw_event_ids", "percentile", "slope"]

UNCOMPARED = ("emitted_at", "revision", "retracted")  # fields of a contact record the simulator cannot predict


@dataclass
class Pipeline:
    """Broker, one integration with its group names, the ingress and the workers of one bench run."""

    machine: Machine
    settings: Settings
    key: str = ""
    broker: subprocess.Popen | None = None
    ingress: Ingress | None = None
    workers: list[Worker] = field(default_factory=list)
    started: int = 0  # children started so far, for unique log names

    @classmethod
    def configure(cls, machine: Machine, **changes) -> "Pipeline":
        return cls(machine, broker_settings(machine, **{"log_level": "INFO", **changes}))

    async def start(self, workers: int = 1) -> None:
        """The broker, the integration and its group names, then the ingress and the workers, all ready."""
        self.broker = await start_broker(self.machine, self.settings)
        self.key = new_ingress_key()
        async with IntegrationStore(self.settings) as store:
            await store.put(new_integration(INTEGRATION, "bench.freshchat.com", self.key))
        await publish_group_names(self.settings, INTEGRATION, GROUPS)  # as the REST poller would
        await self.start_ingress()
        for _ in range(workers):
            await self.start_worker()

    def _name(self, role: str) -> str:
        self.started += 1
        return f"{role}-{self.started}"

    async def start_ingress(self) -> Ingress:
        self.ingress = Ingress(self.machine, self.settings, self._name("ingress")).start()
        await self.ingress.wait_ready()
        return self.ingress

    async def start_worker(self, wait: bool = True) -> Worker:
        worker = Worker(self.machine, self.settings, self._name("worker")).start()
        self.workers.append(worker)
        if wait:
            await worker.wait_ready()
        return worker

    def kill(self, service: Worker) -> None:
        """SIGKILL, no goodbye: what an OOM kill or a power cut does."""
        service.proc.kill()
        service.proc.wait()
        self.machine.children.forget(service.proc)
        if service in self.workers:
            self.workers.remove(service)

    async def stop_worker(self, worker: Worker) -> int:
        """SIGTERM a worker and wait for it; its exit code."""
        code = await worker.stop()
        self.workers.remove(worker)
        return code

    def tansu_pids(self) -> list[int]:
        """What to pause to pause the broker: Tansu and its wrapper."""
        return tree_pids(self.broker.pid)

    def rss(self) -> dict[str, int]:
        """Resident memory of each role now (a role's processes summed)."""
        figures = {"ingress": tree_rss(self.ingress.proc.pid), "broker": tree_rss(self.broker.pid)}
        figures["worker"] = sum(tree_rss(w.proc.pid) for w in self.workers)
        return figures

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each role (workers summed, those already gone not counted)."""
        figures = {"ingress": tree_cpu(self.ingress.proc.pid), "broker": tree_cpu(self.broker.pid)}
        figures["worker"] = sum(tree_cpu(w.proc.pid) for w in self.workers)
        return figures

    def logs(self) -> list[Path]:
        return sorted(self.machine.workdir.glob("*.log"))


class ContactLog:
    """The contact watcher child (harness/contact_watch.py) and what it has written so far."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.path = pipeline.machine.workdir / "contacts.tsv"
        self.proc: subprocess.Popen | None = None
        self.first_seen: dict[str, float] = {}  # contact_id → when the watcher first read it
        self.contacts: dict[str, dict] = {}  # contact_id → its first copy
        self.copies: list[dict] = []  # every record after the first of its contact_id
        self.reads: dict[str, list[tuple[float, dict]]] = {}  # contact_id → (read at, record), every copy
        self._offset = 0

    def start(self) -> "ContactLog":
        settings = self.pipeline.settings
        self.proc = self.pipeline.machine.children.start(
            "contact-watch", [sys.executable, "-m", "harness.contact_watch", settings.bootstrap,
                              settings.contacts_topic, str(self.path)],
            env=bench_env(settings), log=self.pipeline.machine.workdir / "contact-watch.log", cwd=BENCH,
            cpus=self.pipeline.machine.other_cpus)
        return self

    def read(self) -> int:
        """Take in the lines written since the last call; returns how many records arrived."""
        if self.proc.poll() is not None:
            raise BenchError(f"the contact watcher exited: {tail(self.pipeline.machine.workdir / 'contact-watch.log')}")
        if not self.path.exists():
            return 0
        with open(self.path, "rb") as source:
            source.seek(self._offset)
            chunk = source.read()
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        lines = complete.splitlines()
        for line in lines:
            read_at, _, value = line.partition(b"\t")
            contact = orjson.loads(value)
            cid = contact["contact_id"]
            self.reads.setdefault(cid, []).append((float(read_at), contact))
            if cid in self.contacts:
                self.copies.append(contact)
            else:
                self.contacts[cid], self.first_seen[cid] = contact, float(read_at)
        return len(lines)

    @property
    def records(self) -> int:
        return len(self.contacts) + len(self.copies)

    async def wait_for_all(self, expected: set[str], timeout: float, final=None) -> bool:
        """Until every expected contact_id has been seen; False at the deadline (lost ones are reported).

        `final` (a test of this log), when given, must hold too: under disorder a contact
        seen early may still be revised or retracted.
        """
        async def complete() -> bool:
            self.read()
            return expected <= self.contacts.keys() and (final is None or final(self))

        try:
            await wait_for(complete, timeout, "every expected contact", interval=0.25)
            return True
        except BenchError:
            return False


@dataclass
class Truth:
    """What the simulator said must happen, and what the ingress answered: the other side of every check.

    With `disorder` (adversarial delivery, build_scenario(disorder=True)) a late event
    revises or retracts a contact already emitted, so the records are folded as a consumer
    does: each contact_id at its highest revision, retracted ones absent; that must equal
    the expectation, and a contact's latency runs from the 202 of the delivery that
    completed its cycle to the first record equal to the expectation read after it.
    Ordered traffic keeps the strict check: the first record, and every copy, must equal
    the expectation. `revision` and `retracted` are the worker's bookkeeping, not compared.
    """

    expected: dict[str, dict] = field(default_factory=dict)  # contact_id → contact (no emitted_at)
    resolved_202: dict[str, float] = field(default_factory=dict)  # contact_id → 202 of the delivery completing it
    event_ids: set[str] = field(default_factory=set)  # every event id answered 202
    accepted: int = 0  # events answered 202
    first_202: float | None = None
    last_202: float | None = None
    disorder: bool = False

    @property
    def final(self):
        """What ContactLog.wait_for_all must also wait for (disorder only): the folded contacts are those expected."""
        return self._all_final if self.disorder else None

    def _all_final(self, log: ContactLog) -> bool:
        folded = folded_contacts(log)
        return folded.keys() == self.expected.keys() and all(self.same(c) for c in folded.values())

    def add(self, scenario: Scenario) -> None:
        self.expected.update((c["contact_id"], c) for c in scenario.expected)

    def on_accepted(self, index: int, delivery: Delivery, event_ids: list, at: float) -> None:
        self.accepted += len(event_ids)
        self.event_ids.update(event_ids)
        self.first_202 = self.first_202 or at
        self.last_202 = at
        if delivery.closes:
            self.resolved_202.setdefault(f"{INTEGRATION}:{delivery.chat}:{delivery.closes}", at)

    def same(self, contact: dict) -> bool:
        """Whether a contact record equals its expectation (emission time and revision aside)."""
        wanted = self.expected.get(contact["contact_id"])
        return wanted is not None and {k: v for k, v in contact.items() if k not in UNCOMPARED} == wanted

    def settled(self, log: ContactLog, cid: str, at: float) -> float | None:
        """When contact `cid` was read as final, for a cycle completed by a delivery answered 202 at `at`."""
        if not self.disorder:
            return log.first_seen.get(cid)
        return next((read for read, contact in log.reads.get(cid, ()) if read >= at and self.same(contact)), None)

    def compare(self, log: ContactLog) -> dict:
        """Lost, unexpected, duplicated and differing contacts; latencies of the ones both sides know."""
        folded = folded_contacts(log) if self.disorder else {}
        seen = folded.keys() if self.disorder else log.contacts.keys()
        timed = sorted((at, read - at) for cid, at in self.resolved_202.items()
                       if (read := self.settled(log, cid, at)) is not None)
        checked = folded.values() if self.disorder else [*log.contacts.values(), *log.copies]
        return {
            "expected": len(self.expected), "seen": len(seen), "records": log.records,
            "lost": sorted(self.expected.keys() - seen), "unexpected": sorted(seen - self.expected.keys()),
            "duplicates": [c["contact_id"] for c in log.copies],
            "differing": [c["contact_id"] for c in checked if c["contact_id"] in self.expected and not self.same(c)],
            "latencies": sorted(latency for _, latency in timed),
            "timed_latencies": timed,  # (202 wall time, latency), in order of the 202s
        }


def folded_contacts(log: ContactLog) -> dict[str, dict]:
    """contact_id → its record at the highest revision (the last read among equals), retracted ones left out."""
    folded = final_revisions(c for reads in log.reads.values() for _, c in reads)
    return {cid: c for cid, c in folded.items() if not c.get("retracted")}


def segments(chats_per_segment: int, count: int, seed: int, spacing: timedelta, start: datetime,
             disorder: bool = False):
    """Scenarios built back to back: distinct chats, each segment `spacing` later in event time."""
    for n in range(count):
        yield build_scenario(INTEGRATION, chats_per_segment, seed + n, start=start + n * spacing,
                             first_index=n * chats_per_segment, disorder=disorder)


async def raw_event_ids(settings: Settings, timeout: float = 120.0) -> set[str]:
    """Every event_id on the raw topic, read to each partition's fetch high watermark (docs/reference.md)."""
    consumer = make_consumer(settings, fetch_max_wait_ms=50, max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    ids: set[str] = set()
    try:
        await consumer.topics()
        tps = [TopicPartition(settings.raw_topic, p) for p in sorted(consumer.partitions_for_topic(settings.raw_topic))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)

        async def at_end() -> bool:
            for records in (await consumer.getmany(*tps, timeout_ms=200, max_records=20_000)).values():
                ids.update(orjson.loads(record.value)["event_id"] for record in records)
            for tp in tps:
                end = consumer.highwater(tp)
                if end is None or await consumer.position(tp) < end:
                    return False
            return True

        await wait_for(at_end, timeout, f"the end of {settings.raw_topic}", interval=0)
        return ids
    finally:
        await consumer.stop()


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile of sorted values (nan when there are none)."""
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, round(share * len(values)) - 1))]


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points; 0 with fewer than two."""
    if len(points) < 2:
        return 0.0
    return statistics.linear_regression([x for x, _ in points], [y for _, y in points]).slope
