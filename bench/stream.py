"""Benchmark: the stream worker next to a plain aiokafka loop, per open chat, and at restart.

Why: per-event overhead, not Kafka, bounds a Python stream processor (a
plain consume → dict → produce loop ran ~145k events/s on this kind of machine, a naive
Faust agent with a table ~4.3k/s). This script shows where the worker stands, measured
next to baselines taken in the same run, so the ratios mean something on a shared,
noisy machine:

1. Throughput. N = chats × events-per-chat raw envelopes (native Freshchat webhooks: a
   user message, an assignment to a group, bot/agent/user messages, a private note, a
   resolution; chats interleaved in event-time order) are pre-loaded into a fresh raw
   topic, keyed and enveloped exactly as the ingress does, and the group names are put
   on the groups topic first. The ceiling is a plain aiokafka loop (this file with
   --ceiling-child): read, orjson-decode, a small dict per chat, one JSON contact per
   resolution, acks awaited; timed from the first record read to the last contact
   acknowledged. The worker (`python -m connectors.cli worker`) is timed from the moment
   its /readyz turns 200 (partitions assigned, reading starts) to the `emitted_at` of its
   last contact. Goal: worker >= 50% of the ceiling's events/s, exactly `chats` contacts.
   A contact counts once per contact_id, at its highest `revision` (of equal ones the
   later `emitted_at`) unless that record is `retracted`; records without the fields count
   as revision 1, not retracted, so a worker that revises contacts and one that does not
   are checked alike.
2. Memory per open chat. A fresh worker's RSS (VmRSS) once ready and idle, then again
   after it applied --open-chats chats of 2 events each (no resolution); the difference
   per chat, next to the size of the serialised state per chat (ChatState.dumps()).
   Goal: < 1 KiB per open chat with the memory store.
3. Recovery. That worker is stopped (SIGTERM) and a new one started on the same topics
   and app id: start → /readyz 200 (only after table recovery), next to the same for a
   worker with an empty changelog (fresh app id). A sample of the open chats is then
   resolved to prove their state survived. Goal: recovering 100,000 chats < 10 s.

It starts everything itself: an embedded broker (`python -m connectors.cli broker`) on a
free port with a temporary data dir, unique topic names and app ids per run, and the
workers each in their own temporary working directory (Faust writes `<app id>-data`
there). With 2+ CPUs the subject (ceiling loop or worker) is pinned to one CPU and the
broker and this script to another, so each figure is "one process on one core". Every
child is stopped on exit, error, Ctrl-C or SIGTERM (and Linux kills them if this script
is killed outright).

Comparing with an earlier commit (--compare-with REF): a change must often show that it
costs no throughput or memory against the code before it, and two separate runs on a
shared machine differ by more than the change does. So REF is checked out into a
temporary `git worktree add --detach` (removed on exit, error or Ctrl-C) and its worker
runs in the same run as an extra subject of measurement 1: the same pre-loaded topic,
settings, CPU pinning and .venv interpreter, its own app id, consumer group and contacts
topic (REF may keep its state in another format), and PYTHONPATH pointing at the
worktree. With --repeats N the workers run REF, current, REF, current, ... (N each, so
neither always gets the warmer or the fuller broker) and the medians are compared:
current / REF events/s, goal >= 90%. --compare-memory also runs measurement 2 for REF
(bytes per open chat of both; REF's serialised state size is not measured, this script
imports only the current tree). "Current" is the repository's working tree, uncommitted
edits included.

Run it from the repository root (takes a few minutes with the defaults):

    .venv/bin/python bench/stream.py [--chats 20000] [--events-per-chat 10]
        [--open-chats 100000] [--partitions 6] [--skip-memory]
        [--compare-with REF [--compare-memory]] [--repeats N]

--skip-memory skips measurements 2 and 3. Exit status: 0 when every correctness check
passed (goals missed are reported, not failures), 1 when one failed or a step timed out,
130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from bench/: import the work tree's packages

import aiohttp  # noqa: E402
import orjson  # noqa: E402
from aiokafka import TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402

from connectors.kafka.broker import free_port  # noqa: E402
from connectors.cli.dev import child_environment  # noqa: E402
from connectors.kafka.clients import client_options, make_consumer, make_producer  # noqa: E402
from connectors.kafka.topics import ensure_topics  # noqa: E402
from streams.domain.chat import ChatState, apply  # noqa: E402
from streams.domain.contact import revision_order  # noqa: E402
from streams.domain.envelope import conversation_id_of, encode_envelope, event_id  # noqa: E402
from streams.domain.events import normalise  # noqa: E402
from streams.domain.times import format_time, ms_to_time, parse_time  # noqa: E402
from children import Children  # noqa: E402  (bench/children.py, beside this script)
from streams.settings import Settings  # noqa: E402

INTEGRATION = "bench"
GROUPS = {f"g-{n:02d}": f"Queue {n:02d}" for n in range(1, 9)}
AGENTS = [f"a-{n:04d}" for n in range(1, 41)]
APP_ID, CHANNEL_ID = "a1b2c3d4-0000-4000-8000-00000000000a", "c-0001"
BASE_MS = 1_714_953_600_000  # 2024-05-06T00:00:00Z
CHAT_SPACING_MS = 1_000  # a new chat every second ...
EVENT_STEP_MS = 20_000  # ... and one event per chat every 20 s: ~200 chats open at once
# What happens between the first user message + assignment and the resolution, in turn.
MIDDLE = [("bot", "normal"), ("agent", "normal"), ("user", "normal"), ("agent", "private"),
          ("agent", "normal"), ("user", "normal"), ("agent", "normal")]
THROUGHPUT_GOAL, MEMORY_GOAL_BYTES, RECOVERY_GOAL_S = 0.50, 1024, 10.0
REF_GOAL = 0.90  # current / REF events/s: "within 10% of the commit before"
READY_TIMEOUT_S = 180.0
RECOVERY_SAMPLE = 1000  # open chats resolved after the restart to prove their state survived


class BenchError(RuntimeError):
    """A step failed or timed out; the message says which and where its log is."""


# --- child processes -------------------------------------------------------------------


@dataclass
class Machine:
    """Where things run: the temp dir, the CPUs, and the children started so far."""

    workdir: Path
    children: Children
    subject_cpus: set[int] | None  # the ceiling loop and the workers
    other_cpus: set[int] | None  # the broker and this script


@dataclass(frozen=True)
class Code:
    """The code a worker runs: the tree its PYTHONPATH points at, a label to print, a slug for names."""

    label: str
    root: Path
    slug: str


CURRENT = Code("current", ROOT, "cur")


def tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return "\n".join(text[-lines:]) or "(empty log)"


def bench_env(settings: Settings, root: Path = ROOT) -> dict:
    """The child's environment: these settings spelled out, and the tree at `root` importable."""
    env = child_environment(settings)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return env


async def wait_for(condition, timeout: float, what: str, interval: float = 0.1):
    """Poll an async condition until it returns something truthy; BenchError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


async def start_broker(machine: Machine, settings: Settings) -> subprocess.Popen:
    """`python -m connectors.cli broker` on the settings' port, once it says it is running."""
    log = machine.workdir / "broker.log"
    proc = machine.children.start("broker", [sys.executable, "-m", "connectors.cli", "broker",
                                             "--port", str(settings.broker_port)],
                                  env=bench_env(settings.replace(kafka_bootstrap="", log_level="WARNING")),
                                  log=log, cpus=machine.other_cpus)

    async def running() -> bool:
        if proc.poll() is not None:
            raise BenchError(f"the broker exited with {proc.returncode}:\n{tail(log)}")
        return "freshstream broker running" in log.read_text(errors="replace")

    await wait_for(running, 60, f"the broker (log {log})", interval=0.05)
    return proc


# --- the worker ------------------------------------------------------------------------


class Worker:
    """A `freshstream worker` child: start, /readyz, /metrics, RSS, stop."""

    verb = ["worker", "--web-port"]  # the port flag follows the verb

    def __init__(self, machine: Machine, settings: Settings, name: str, code: Code = CURRENT) -> None:
        self.machine, self.settings, self.name, self.code = machine, settings, name, code
        self.port = free_port()
        self.log = machine.workdir / f"{name}.log"
        self.cwd = machine.workdir / name  # Faust's <app id>-data directory goes here
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    def start(self) -> "Worker":
        self.cwd.mkdir(exist_ok=True)
        self.started_at = time.time()
        self.proc = self.machine.children.start(
            self.name, [sys.executable, "-m", "connectors.cli", *self.verb, str(self.port)],
            env=bench_env(self.settings, self.code.root), log=self.log, cwd=self.cwd,
            cpus=self.machine.subject_cpus)
        return self

    async def _get(self, session: aiohttp.ClientSession, path: str) -> tuple[int | None, str]:
        if self.proc.poll() is not None:
            raise BenchError(f"{self.name} exited with {self.proc.returncode}:\n{tail(self.log)}")
        try:
            async with session.get(f"http://127.0.0.1:{self.port}{path}",
                                   timeout=aiohttp.ClientTimeout(total=5)) as answer:
                return answer.status, await answer.text()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return None, ""

    async def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> float:
        """Poll /readyz every 50 ms; the wall-clock time of the first request answered 200."""
        async with aiohttp.ClientSession() as session:
            async def ready() -> float | None:
                sent = time.time()
                status, _ = await self._get(session, "/readyz")
                return sent if status == 200 else None

            return await wait_for(ready, timeout, f"{self.name} /readyz (log {self.log})", interval=0.05)

    async def counters(self) -> dict[str, float]:
        """Events by verdict, plus skipped records, from /metrics (empty if it did not answer)."""
        async with aiohttp.ClientSession() as session:
            status, text = await self._get(session, "/metrics")
        totals: dict[str, float] = {}
        for line in text.splitlines() if status == 200 else []:
            name, _, value = line.rpartition(" ")
            if name.startswith("freshstream_worker_events_total"):
                verdict = name.split('verdict="', 1)[1].split('"', 1)[0]
                totals[verdict] = totals.get(verdict, 0) + float(value)
            elif name.startswith("freshstream_worker_skipped_total"):
                totals["skipped"] = totals.get("skipped", 0) + float(value)
        return totals

    async def wait_counted(self, expected: int, timeout: float, *, applied_only: bool = False) -> dict:
        """Poll /metrics until the worker has taken `expected` raw records (or applied that many)."""
        async def done() -> dict | None:
            totals = await self.counters()
            seen = totals.get("applied", 0) if applied_only else sum(totals.values())
            return totals if seen >= expected else None

        what = f"{self.name} to {'apply' if applied_only else 'take'} {expected:,} events (log {self.log})"
        return await wait_for(done, timeout, what, interval=0.25)

    def rss(self) -> int:
        """VmRSS in bytes, from /proc/<pid>/status."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise BenchError(f"no VmRSS for pid {self.proc.pid}")

    async def settled_rss(self, timeout: float = 20.0) -> int:
        """RSS once it stops moving: three samples 0.5 s apart within 1%, else the last at the deadline."""
        samples: list[int] = []

        async def settled() -> bool:
            samples.append(self.rss())
            last = samples[-3:]
            return len(last) == 3 and max(last) - min(last) <= 0.01 * max(last)

        try:
            await wait_for(settled, timeout, "a steady RSS", interval=0.5)
        except BenchError:
            pass  # still moving: the last sample is the answer
        return samples[-1]

    async def stop(self) -> int:
        return await self.machine.children.stop(self.proc)


# --- the events ------------------------------------------------------------------------


def conversation_id(index: int) -> str:
    """A UUID-shaped conversation id, like Freshchat's, deterministic per chat index."""
    return str(uuid.UUID(int=(0xB3F2A7C4 << 96) | index))


def _message(conv: str, at: int, n: int, actor: str, message_type: str, actor_id: str, user_id: str) -> dict:
    time_ = ms_to_time(at)
    return {"actor": {"actor_type": actor, "actor_id": actor_id}, "action": "message_create", "action_time": time_,
            "data": {"message": {
                "message_parts": [{"text": {"content": f"message {n} of the chat"}}], "app_id": APP_ID,
                "actor_id": actor_id, "id": f"{conv[-12:]}-m{n}", "channel_id": CHANNEL_ID, "conversation_id": conv,
                "message_type": message_type, "actor_type": actor, "created_time": time_,
                "interaction_id": f"{at}-{n}", "user_id": user_id}}}


def _assignment(conv: str, at: int, group: str, agent: str) -> dict:
    return {"actor": {"actor_type": "system", "actor_id": "intelliassign"}, "action": "conversation_assignment",
            "action_time": ms_to_time(at),
            "data": {"assignment": {
                "assignor": "system", "assignor_id": "intelliassign", "to_agent_id": agent, "to_group_id": group,
                "conversation": {"conversation_id": conv, "app_id": APP_ID, "status": "assigned",
                                 "channel_id": CHANNEL_ID, "assigned_agent_id": agent,
                                 "assigned_group_id": group}}}}


def _resolution(conv: str, at: int, agent: str) -> dict:
    return {"actor": {"actor_type": "agent", "actor_id": agent}, "action": "conversation_resolution",
            "action_time": ms_to_time(at),
            "data": {"resolve": {
                "resolver": "agent", "resolver_id": agent,
                "conversation": {"conversation_id": conv, "app_id": APP_ID, "status": "resolved",
                                 "channel_id": CHANNEL_ID}}}}


def chat_payloads(index: int, count: int, resolve: bool) -> list[tuple[int, dict]]:
    """(event time, native webhook) for one chat: user message, assignment, the middle, resolution."""
    conv, start = conversation_id(index), BASE_MS + index * CHAT_SPACING_MS
    group, agent = list(GROUPS)[index % len(GROUPS)], AGENTS[index % len(AGENTS)]
    user = f"u-{index:08d}"
    ids = {"user": user, "agent": agent, "bot": "freddy-bot"}
    events = [_message(conv, start, 0, "user", "normal", user, user),
              _assignment(conv, start + EVENT_STEP_MS, group, agent)][:count]
    middle = count - len(events) - (1 if resolve else 0)
    for n in range(max(0, middle)):
        actor, message_type = MIDDLE[n % len(MIDDLE)]
        at = start + (n + 2) * EVENT_STEP_MS
        events.append(_message(conv, at, n + 2, actor, message_type, ids[actor], user))
    if resolve:
        events.append(_resolution(conv, start + (count - 1) * EVENT_STEP_MS, agent))
    return [(parse_time(e["action_time"]), e) for e in events]


def envelope(payload: dict, received_at: str) -> tuple[bytes, bytes]:
    """(key, value) exactly as the ingress writes a single-object webhook body."""
    body = orjson.dumps(payload)
    conv = conversation_id_of("webhook", payload["action"], payload)
    value = encode_envelope(event_id=event_id(INTEGRATION, body), integration=INTEGRATION,
                            received_at=received_at, fmt="webhook", retry_count=0, payload=body)
    return f"{INTEGRATION}:{conv}".encode(), value


def build_load(chats: int, per_chat: int, resolve: bool) -> list[tuple[bytes, bytes]]:
    """Every chat's envelopes, interleaved in event-time order as live traffic arrives."""
    timed = [(at, index, n, payload) for index in range(chats)
             for n, (at, payload) in enumerate(chat_payloads(index, per_chat, resolve))]
    timed.sort(key=lambda item: item[:3])
    received_at = format_time(datetime.now(timezone.utc))
    return [envelope(payload, received_at) for _, _, _, payload in timed]


def resolutions(indexes: range) -> list[tuple[bytes, bytes]]:
    """One resolution per chat, an hour after its opening events."""
    received_at = format_time(datetime.now(timezone.utc))
    return [envelope(_resolution(conversation_id(i), BASE_MS + i * CHAT_SPACING_MS + 3_600_000,
                                 AGENTS[i % len(AGENTS)]), received_at) for i in indexes]


def state_sizes(load: list[tuple[bytes, bytes]], sample_chats: int) -> tuple[float, float]:
    """Average bytes of ChatState.dumps() and of the key, over the first chats of a load."""
    states: dict[bytes, ChatState] = {}
    for key, value in load:
        if key in states or len(states) < sample_chats:
            event = normalise(orjson.loads(value))
            states[key], _, _ = apply(states.get(key), event, Settings().chat_expiry_seconds * 1000)
    values = [len(s.dumps()) for s in states.values()]
    return sum(values) / len(values), sum(len(k) for k in states) / len(states)


# --- Kafka -----------------------------------------------------------------------------


async def create_topic(settings: Settings, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def produce(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    """Send every record (acks=all, big batches, long linger); seconds until all were acknowledged."""
    producer = make_producer(settings, linger_ms=50, max_batch_size=512 * 1024)
    await producer.start()
    started = time.perf_counter()
    try:
        futures = []
        for key, value in records:
            futures.append(await producer.send(topic, value, key=key))
            if len(futures) >= 20_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def put_group_names(settings: Settings) -> None:
    seen_at = format_time(datetime.now(timezone.utc))
    await produce(settings, settings.groups_topic,
                  [(f"{INTEGRATION}:{gid}".encode(), orjson.dumps({"name": name, "seen_at": seen_at}))
                   for gid, name in GROUPS.items()])


async def preload(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Produce a load and check the topic holds it (ends from fetch high watermarks)."""
    seconds = await produce(settings, topic, records)
    watch = TopicWatch(settings, topic)
    await watch.start()
    try:
        held = await watch.total()
    finally:
        await watch.stop()
    print(f"  pre-loaded {len(records):,} records into {topic} in {seconds:.1f} s "
          f"({len(records) / seconds:,.0f}/s); the topic holds {held:,}", flush=True)
    if held != len(records):
        raise BenchError(f"{topic} holds {held:,} records, not the {len(records):,} produced")


@dataclass(frozen=True)
class Held:
    """The record a contact_id stands at: its place in the revision order, and what the checks look at."""

    order: tuple[int, str]  # streams.domain.contact.revision_order: what a consumer keeps the highest of
    emitted_ms: int  # emitted_at in epoch ms (0 without one): the throughput figure's end
    retracted: bool
    undefined: bool = False
    without_history: bool = False  # no user message or no group: the chat's earlier events were not applied

    @classmethod
    def of(cls, contact: dict) -> "Held":
        """Tolerant of records without `revision`/`retracted` (older workers: revision 1) or a body."""
        order = revision_order(contact)
        emitted_ms = parse_time(contact["emitted_at"]) if contact.get("emitted_at") else 0
        if contact.get("retracted"):
            return cls(order, emitted_ms, True)
        messages = contact.get("messages") or {}
        return cls(order, emitted_ms, False, contact.get("queue") == "Undefined_Queue",
                   not messages.get("user") or contact.get("group_id") is None)

    def replaces(self, other: "Held | None") -> bool:
        """Higher revision, or the same one emitted later (a re-emission after a crash) or as late."""
        return other is None or self.order >= other.order


@dataclass
class Contacts:
    """What a TopicWatch has read from a contacts topic so far, one entry per contact_id.

    Workers may write a contact_id more than once (revisions, retractions), so the checks
    count live ids (highest revision not retracted), not records.
    """

    records: int = 0
    held: dict[str, Held] = field(default_factory=dict)
    live: int = 0  # kept as records arrive: read_contacts polls it after every fetch
    last_emitted_ms: int = 0
    last_seen: float = 0.0  # wall clock when the latest record was read

    def add(self, value: bytes) -> None:
        contact = orjson.loads(value)
        self.records += 1
        new, old = Held.of(contact), self.held.get(contact["contact_id"])
        if new.replaces(old):
            self.held[contact["contact_id"]] = new
            self.live += (not new.retracted) - (old is not None and not old.retracted)
        self.last_emitted_ms = max(self.last_emitted_ms, new.emitted_ms)
        self.last_seen = time.time()

    @property
    def ids(self) -> set[str]:
        """The live contact ids."""
        return {cid for cid, held in self.held.items() if not held.retracted}

    @property
    def undefined(self) -> int:
        return sum(held.undefined for held in self.held.values() if not held.retracted)

    @property
    def without_history(self) -> int:
        return sum(held.without_history for held in self.held.values() if not held.retracted)


class TopicWatch:
    """A plain consumer over every partition of a topic, from the beginning.

    Partition ends come from fetch high watermarks (consumer.highwater after a getmany),
    not end_offsets(): the embedded broker's ListOffsets lags (docs/reference.md).
    """

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self.consumer = make_consumer(settings, fetch_max_wait_ms=100)
        self.tps: list[TopicPartition] = []
        self.contacts = Contacts()

    async def start(self) -> None:
        await self.consumer.start()
        await self.consumer.topics()
        partitions = self.consumer.partitions_for_topic(self.topic)
        if not partitions:
            raise BenchError(f"topic {self.topic} does not exist")
        self.tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self.consumer.assign(self.tps)
        await self.consumer.seek_to_beginning(*self.tps)

    async def stop(self) -> None:
        await self.consumer.stop()

    async def _read(self, keep: bool) -> None:
        for records in (await self.consumer.getmany(*self.tps, timeout_ms=200)).values():
            for record in records:
                if keep:
                    self.contacts.add(record.value)

    async def total(self, timeout: float = 30.0) -> int:
        """Records on the topic: the sum of every partition's fetch high watermark."""
        async def known() -> bool:
            await self.consumer.getmany(*self.tps, timeout_ms=200, max_records=1)
            return all(self.consumer.highwater(tp) is not None for tp in self.tps)

        await wait_for(known, timeout, f"high watermarks of {self.topic}", interval=0)
        return sum(self.consumer.highwater(tp) for tp in self.tps)

    async def read_contacts(self, count: int, timeout: float) -> Contacts:
        """Read contacts until `count` contact ids are live (records alone may be revisions)."""
        async def enough() -> bool:
            await self._read(keep=True)
            return self.contacts.live >= count

        try:
            await wait_for(enough, timeout, f"{count:,} contacts on {self.topic}", interval=0)
        except BenchError as exc:
            raise BenchError(f"{exc} (got {self.contacts.live:,} live ids in "
                             f"{self.contacts.records:,} records)") from None
        return self.contacts

    async def drain(self, timeout: float = 30.0) -> Contacts:
        """Read contacts up to every partition's high watermark."""
        async def at_end() -> bool:
            await self._read(keep=True)
            for tp in self.tps:
                end = self.consumer.highwater(tp)
                if end is None or await self.consumer.position(tp) < end:
                    return False
            return True

        await wait_for(at_end, timeout, f"the end of {self.topic}", interval=0)
        return self.contacts


# --- 1. throughput: the ceiling --------------------------------------------------------


def ceiling_child(spec: dict) -> int:
    """Entry point of `bench/stream.py --ceiling-child JSON`: run the loop, write its figures."""
    result = asyncio.run(_ceiling(spec))
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


async def _ceiling(spec: dict) -> dict:
    """The plain loop: read, decode, a small dict per chat, one contact per resolution."""
    settings = Settings(kafka_bootstrap=spec["bootstrap"])
    consumer, producer = make_consumer(settings, fetch_max_wait_ms=100), make_producer(settings)
    await consumer.start()
    await producer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(spec["raw"], p) for p in sorted(consumer.partitions_for_topic(spec["raw"]))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        return await _ceiling_loop(consumer, producer, spec)
    finally:
        await producer.stop()
        await consumer.stop()


async def _ceiling_loop(consumer, producer, spec: dict) -> dict:
    chats: dict[bytes, dict] = {}
    pending, events, contacts, first = [], 0, 0, None
    deadline = time.monotonic() + spec["timeout"]
    while events < spec["events"]:
        batches = await consumer.getmany(timeout_ms=500)
        if first is None and batches:
            first = time.perf_counter()
        for records in batches.values():
            for record in records:
                events += 1
                contact = _ceiling_apply(chats, record.key, orjson.loads(record.value)["payload"])
                if contact is not None:
                    key, value = contact
                    pending.append(await producer.send(spec["contacts"], value, key=key))
                    contacts += 1
        if len(pending) >= 5000:
            await asyncio.gather(*pending)
            pending.clear()
        if time.monotonic() > deadline:
            raise BenchError(f"the ceiling loop read only {events:,} of {spec['events']:,} events")
    await asyncio.gather(*pending)
    return {"events": events, "contacts": contacts, "seconds": time.perf_counter() - first}


def _ceiling_apply(chats: dict, key: bytes, payload: dict) -> tuple[bytes, bytes] | None:
    """Fold one webhook into its chat's dict; the contact (key, value) on a resolution."""
    at = payload["action_time"]
    state = chats.get(key)
    if state is None:
        state = chats[key] = {"first": at, "last": at, "group": None, "user": 0, "agent": 0, "bot": 0,
                              "private": 0}
    state["first"], state["last"] = min(state["first"], at), max(state["last"], at)
    action, data = payload["action"], payload["data"]
    if action == "message_create":
        message = data["message"]
        state["private" if message["message_type"] == "private" else message["actor_type"]] += 1
    elif action == "conversation_assignment":
        state["group"] = data["assignment"]["to_group_id"]
    elif action == "conversation_resolution":
        queue = GROUPS.get(state["group"], "Undefined_Queue")
        contact = {"contact_id": key.decode() + ":1", "queue": queue, "started_at": state["first"],
                   "resolved_at": at, "messages": {k: state[k] for k in ("user", "agent", "bot", "private")},
                   "emitted_at": format_time(datetime.now(timezone.utc))}
        return f"{INTEGRATION}/{queue}".encode(), orjson.dumps(contact)
    return None


async def run_ceiling(machine: Machine, settings: Settings, events: int, chats: int) -> dict:
    """The ceiling loop in a child process on the subject CPU; its figures."""
    contacts = f"{settings.contacts_topic}-ceiling"
    await create_topic(settings, contacts, settings.topic_partitions)
    result, log = machine.workdir / "ceiling.json", machine.workdir / "ceiling.log"
    spec = {"bootstrap": settings.bootstrap, "raw": settings.raw_topic, "contacts": contacts,
            "events": events, "result": str(result), "timeout": max(300.0, events / 500)}
    proc = machine.children.start("ceiling", [sys.executable, str(Path(__file__).resolve()),
                                              "--ceiling-child", json.dumps(spec)],
                                  env=bench_env(settings), log=log, cpus=machine.subject_cpus)
    try:
        code = await asyncio.to_thread(proc.wait, spec["timeout"] + 60)
    except subprocess.TimeoutExpired:
        raise BenchError(f"the ceiling loop did not finish (log {log})") from None
    if code != 0 or not result.exists():
        raise BenchError(f"the ceiling loop exited with {code}:\n{tail(log)}")
    figures = json.loads(result.read_text())
    if figures["contacts"] != chats:
        raise BenchError(f"the ceiling loop emitted {figures['contacts']:,} contacts, not {chats:,}")
    return figures


# --- 1. throughput: the workers --------------------------------------------------------


async def run_worker_throughput(machine: Machine, settings: Settings, events: int, chats: int,
                                code: Code = CURRENT, name: str = "worker-throughput") -> dict:
    """Worker from /readyz 200 to the emitted_at of its last contact; checks the contacts."""
    await ensure_topics(settings)  # the contacts topic exists before the watch reads it
    watch = TopicWatch(settings, settings.contacts_topic)
    await watch.start()
    worker = Worker(machine, settings, name, code).start()
    try:
        ready = await worker.wait_ready()
        print(f"  {code.label} worker pid {worker.proc.pid} ready {ready - worker.started_at:.1f} s after start; "
              "reading the pre-loaded topic", flush=True)
        contacts = await watch.read_contacts(chats, timeout=max(600.0, events / 200))
        totals = await worker.wait_counted(events, timeout=120)
        contacts = await watch.drain()
        return {"ready": ready, "contacts": contacts, "totals": totals, "pid": worker.proc.pid}
    finally:
        await watch.stop()
        await worker.stop()


def run_order(ref: Code | None, repeats: int) -> list[Code]:
    """REF, current, REF, current, ...: neither always gets the cooler machine or the emptier broker."""
    return ([ref, CURRENT] if ref else [CURRENT]) * repeats


async def time_worker(machine: Machine, settings: Settings, args, code: Code, run: str) -> dict:
    """One run on the pre-loaded topic; its own app id (consumer group, changelogs) and contacts topic.

    Own names make the worker read everything from scratch, and let REF keep its state in
    whatever format it has without meeting the current tree's.
    """
    own = settings.replace(contacts_topic=f"{settings.contacts_topic}-{run}",
                           worker_app_id=f"{settings.worker_app_id}-{run}")
    events = args.chats * args.events_per_chat
    worker = await run_worker_throughput(machine, own, events, args.chats, code, f"worker-throughput-{run}")
    contacts: Contacts = worker["contacts"]
    seconds = contacts.last_emitted_ms / 1000 - worker["ready"]
    seen_seconds = contacts.last_seen - worker["ready"]
    rate = events / seconds
    print(f"  {code.label} worker: {events:,} events in {seconds:.2f} s = {rate:,.0f} events/s "
          f"(ready → last emitted_at); {events / seen_seconds:,.0f} events/s to the last contact read here",
          flush=True)
    ok = check_contacts(contacts, args.chats, worker["totals"])
    return {"rate": rate, "ok": ok, "contacts": len(contacts.ids)}


def check_contacts(contacts: Contacts, chats: int, totals: dict) -> bool:
    """Exactly `chats` live contact ids, none in Undefined_Queue; printed with the worker's verdicts."""
    ids, undefined = len(contacts.ids), contacts.undefined
    retracted = len(contacts.held) - ids
    ok = ids == chats and undefined == 0
    verdicts = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(totals.items()))
    print(f"    contacts: {contacts.records:,} records, {ids:,} distinct live contact ids "
          f"({retracted:,} retracted), {undefined:,} in Undefined_Queue (expected {chats:,}, 0): "
          f"{'OK' if ok else 'FAILED'}; events: {verdicts}", flush=True)
    return ok


async def measure_throughput(machine: Machine, base: Settings, args, tag: str, ref: Code | None) -> dict:
    """The ceiling once, then every worker run (run_order) on the same pre-loaded topic."""
    settings = base.replace(raw_topic=f"bench-raw-{tag}", contacts_topic=f"bench-contacts-{tag}",
                            worker_app_id=f"bench-worker-{tag}")
    events = args.chats * args.events_per_chat
    print(f"\n1. throughput: {args.chats:,} chats x {args.events_per_chat} events = {events:,} events", flush=True)
    await ensure_topics(settings)
    await put_group_names(settings)
    await preload(settings, settings.raw_topic, build_load(args.chats, args.events_per_chat, resolve=True))
    ceiling = await run_ceiling(machine, settings, events, args.chats)
    ceiling_rate = events / ceiling["seconds"]
    print(f"  ceiling (plain aiokafka loop): {events:,} events in {ceiling['seconds']:.2f} s = "
          f"{ceiling_rate:,.0f} events/s; {ceiling['contacts']:,} contacts acknowledged", flush=True)
    runs: dict[str, list[dict]] = {}
    order = run_order(ref, args.repeats)
    for n, code in enumerate(order, 1):
        print(f"  run {n}/{len(order)}: {code.label} worker", flush=True)
        runs.setdefault(code.slug, []).append(await time_worker(machine, settings, args, code, f"{code.slug}{n}"))
    return summarise_throughput(ceiling_rate, runs, ref)


def summarise_throughput(ceiling: float, runs: dict[str, list[dict]], ref: Code | None) -> dict:
    """Median events/s per tree (one run each: that run), and current / REF when comparing."""
    median = {slug: statistics.median(run["rate"] for run in slug_runs) for slug, slug_runs in runs.items()}
    figures = {"ceiling": ceiling, "worker": median["cur"], "runs": len(runs["cur"]), "ref": None,
               "ok": all(run["ok"] for slug_runs in runs.values() for run in slug_runs),
               "contacts": sorted({run["contacts"] for slug_runs in runs.values() for run in slug_runs})}
    if ref:
        figures.update(ref=median["ref"], ref_label=ref.label)
        each = {slug: ", ".join(f"{run['rate']:,.0f}" for run in runs[slug]) for slug in ("cur", "ref")}
        print(f"  current vs {ref.label}: median {median['cur']:,.0f} vs {median['ref']:,.0f} events/s "
              f"(current {each['cur']}; REF {each['ref']}); current / REF = {median['cur'] / median['ref']:.3f} "
              f"(goal >= {REF_GOAL:.0%})", flush=True)
    return figures


# --- 2. memory per open chat, and 3. recovery ------------------------------------------


async def measure_state(machine: Machine, base: Settings, args, tag: str,
                        ref: Code | None) -> tuple[dict, dict | None, dict]:
    """Measurements 2 and 3; REF's memory first when it is given (its worker is not restarted)."""
    ref_memory = None
    if ref:
        ref_memory, ref_worker, _ = await measure_memory(machine, base, args, tag, ref)
        await ref_worker.stop()
    memory, worker, settings = await measure_memory(machine, base, args, tag)
    if ref_memory:
        print(f"  memory per open chat: current {memory['per_chat']:,.0f} B vs {ref.label} "
              f"{ref_memory['per_chat']:,.0f} B", flush=True)
    recovery = await measure_recovery(machine, settings, worker, memory["rss_before"], args, tag)
    return memory, ref_memory, recovery


async def measure_memory(machine: Machine, base: Settings, args, tag: str,
                         code: Code = CURRENT) -> tuple[dict, Worker, Settings]:
    """RSS of a fresh worker before and after it holds --open-chats open chats."""
    run = f"{code.slug}-{tag}"
    settings = base.replace(raw_topic=f"bench-raw-open-{run}", contacts_topic=f"bench-contacts-open-{run}",
                            worker_app_id=f"bench-open-{run}")
    n = args.open_chats
    print(f"\n2. memory, {code.label} worker: {n:,} open chats x 2 events (user message, assignment; "
          "no resolution)", flush=True)
    await ensure_topics(settings)
    load = build_load(n, 2, resolve=False)
    state_bytes, key_bytes = state_sizes(load, min(n, 2000)) if code is CURRENT else (None, None)
    worker = Worker(machine, settings, f"worker-memory-{code.slug}", code).start()
    await worker.wait_ready()
    before = await worker.settled_rss()
    print(f"  worker pid {worker.proc.pid} ready and idle: RSS {before / 2**20:.1f} MiB", flush=True)
    await preload(settings, settings.raw_topic, load)
    del load
    totals = await worker.wait_counted(2 * n, timeout=max(600.0, n / 100), applied_only=True)
    after = await worker.settled_rss()
    per_chat = (after - before) / n
    state = (f"serialised state {state_bytes:.0f} bytes (+ key {key_bytes:.0f} bytes) per chat" if state_bytes
             else "serialised state not measured (this script imports only the current tree)")
    print(f"  after {totals.get('applied', 0):,.0f} events applied: RSS {after / 2**20:.1f} MiB; "
          f"{per_chat:,.0f} bytes per open chat; {state}", flush=True)
    figures = {"per_chat": per_chat, "state_bytes": state_bytes, "key_bytes": key_bytes, "rss_before": before}
    return figures, worker, settings


async def measure_recovery(machine: Machine, settings: Settings, worker: Worker, rss_idle: int, args,
                           tag: str) -> dict:
    """Restart on the same app id (tables recover) vs a fresh app id (empty changelog)."""
    n = args.open_chats
    print(f"\n3. recovery: restart the worker holding {n:,} open chats", flush=True)
    code = await worker.stop()
    print(f"  stopped pid {worker.proc.pid} with SIGTERM (exit {code})", flush=True)
    recovering = Worker(machine, settings, "worker-recovering").start()
    recovered_s = await recovering.wait_ready() - recovering.started_at
    rss = await recovering.settled_rss()
    topped = [line.split(": ", 1)[-1] for line in recovering.log.read_text(errors="replace").splitlines()
              if "past the listed end" in line]
    print(f"  same app id: start → ready {recovered_s:.2f} s; RSS {rss / 2**20:.1f} MiB "
          f"({(rss - rss_idle) / n:,.0f} bytes per chat over the idle RSS above); "
          f"tail top-up: {'; '.join(topped) or 'none'}", flush=True)
    survived = await check_survivors(settings, min(n, RECOVERY_SAMPLE))
    await recovering.stop()
    empty = settings.replace(raw_topic=f"bench-raw-empty-{tag}", contacts_topic=f"bench-contacts-empty-{tag}",
                             worker_app_id=f"bench-empty-{tag}")
    await ensure_topics(empty)
    fresh = Worker(machine, empty, "worker-empty").start()
    fresh_s = await fresh.wait_ready() - fresh.started_at
    await fresh.stop()
    print(f"  fresh app id (empty changelog): start → ready {fresh_s:.2f} s; "
          f"recovery costs {recovered_s - fresh_s:+.2f} s", flush=True)
    return {"recovered": recovered_s, "fresh": fresh_s, "ok": survived}


async def check_survivors(settings: Settings, sample: int) -> bool:
    """Resolve the first `sample` open chats; their contacts must count the pre-restart user message."""
    watch = TopicWatch(settings, settings.contacts_topic)
    await watch.start()
    try:
        await produce(settings, settings.raw_topic, resolutions(range(sample)))
        contacts = await watch.read_contacts(sample, timeout=120)
    finally:
        await watch.stop()
    lost = contacts.without_history
    ok = lost == 0 and len(contacts.ids) == sample
    print(f"  state survived the restart: {sample - lost:,}/{sample:,} sampled chats resolved with their "
          f"pre-restart messages: {'OK' if ok else 'FAILED'}", flush=True)
    return ok


# --- report ----------------------------------------------------------------------------


def report(throughput: dict, memory: dict | None, ref_memory: dict | None, recovery: dict | None,
           open_chats: int) -> None:
    rows = [("figure", "value", "baseline", "ratio", "goal", ""), *_throughput_rows(throughput),
            *_memory_rows(memory, ref_memory, throughput.get("ref_label")), *_recovery_rows(recovery, open_chats)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print("\nsummary")
    for n, row in enumerate(rows):
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if n == 0:
            print("  " + "  ".join("-" * width for width in widths))


def _throughput_rows(figures: dict) -> list[tuple[str, ...]]:
    """The worker against the ceiling, against REF when compared, and the contacts check."""
    ratio, many = figures["worker"] / figures["ceiling"], figures["runs"] > 1
    median = f", median of {figures['runs']}" if many else ""
    rows = [(f"throughput (events/s){median}", f"worker {figures['worker']:,.0f}",
             f"plain loop {figures['ceiling']:,.0f}", f"{ratio:.1%}", f">= {THROUGHPUT_GOAL:.0%}",
             _met(ratio >= THROUGHPUT_GOAL))]
    if figures["ref"]:
        vs = figures["worker"] / figures["ref"]
        rows.append((f"throughput vs REF{median}", f"current {figures['worker']:,.0f}",
                     f"{figures['ref_label']} {figures['ref']:,.0f}", f"{vs:.1%}", f">= {REF_GOAL:.0%}",
                     _met(vs >= REF_GOAL)))
    contacts = " / ".join(f"{n:,}" for n in figures["contacts"])
    rows.append(("contacts emitted" + (", every run" if many or figures["ref"] else ""), contacts, "chats", "",
                 "exactly = chats", _met(figures["ok"])))
    return rows


def _memory_rows(memory: dict | None, ref_memory: dict | None, ref_label: str | None) -> list[tuple[str, ...]]:
    if not memory:
        return []
    per_chat = memory["per_chat"]
    rows = [("memory per open chat", f"{per_chat:,.0f} B", f"state {memory['state_bytes']:.0f} B",
             f"{per_chat / memory['state_bytes']:.1f}x", f"< {MEMORY_GOAL_BYTES} B",
             _met(per_chat < MEMORY_GOAL_BYTES))]
    if ref_memory:
        rows.append(("memory per open chat vs REF", f"current {per_chat:,.0f} B",
                     f"{ref_label} {ref_memory['per_chat']:,.0f} B",
                     f"{per_chat / ref_memory['per_chat']:.2f}x" if ref_memory["per_chat"] > 0 else "",
                     f"< {MEMORY_GOAL_BYTES} B", _met(per_chat < MEMORY_GOAL_BYTES)))
    return rows


def _recovery_rows(recovery: dict | None, open_chats: int) -> list[tuple[str, ...]]:
    if not recovery:
        return []
    return [(f"restart, {open_chats:,} chats", f"{recovery['recovered']:.2f} s", f"empty {recovery['fresh']:.2f} s",
             f"{recovery['recovered'] - recovery['fresh']:+.2f} s", f"< {RECOVERY_GOAL_S:.0f} s",
             _met(recovery["recovered"] < RECOVERY_GOAL_S)),
            ("state survived restart", "sampled chats", "", "", "all", _met(recovery["ok"]))]


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


# --- the REF tree ----------------------------------------------------------------------


def git(*args: str) -> str:
    """git in this repository; its stdout, or BenchError with what git said."""
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"git {' '.join(args)}: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done.stdout.strip()


@contextlib.contextmanager
def ref_worktree(ref: str | None):
    """REF checked out in a temporary detached worktree for its worker; removed however the run ends."""
    if ref is None:
        yield None
        return
    sha = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    path = Path(tempfile.mkdtemp(prefix="freshstream-bench-ref-"))
    try:
        git("worktree", "add", "--detach", str(path), sha)
        code = Code(f"REF {ref} ({sha[:10]})", path, "ref")
        check_imports(code)
        yield code
    finally:
        remove_worktree(path)


def remove_worktree(path: Path) -> None:
    """`git worktree remove --force`; should git refuse (half made), delete it and prune the record."""
    try:
        git("worktree", "remove", "--force", str(path))
    except BenchError:
        shutil.rmtree(path, ignore_errors=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], capture_output=True)


def check_imports(code: Code) -> None:
    """Fail early unless a child started as the workers are imports its packages from code.root.

    The .venv holds an editable install of the repository root: PYTHONPATH must win over it,
    or "REF" would silently be the current tree. (cwd: not a tree, as for the workers.)
    """
    script = "import connectors, streams; print(connectors.__file__); print(streams.__file__)"
    done = subprocess.run([sys.executable, "-c", script], env=bench_env(Settings(), code.root),
                          cwd=tempfile.gettempdir(), capture_output=True, text=True)
    found = done.stdout.split()
    if done.returncode != 0 or len(found) != 2 or not all(
            Path(p).resolve().is_relative_to(code.root.resolve()) for p in found):
        raise BenchError(f"a worker for {code.label} would import {found or done.stderr.strip()[-500:]}, "
                         f"not the packages under {code.root}")


# --- main ------------------------------------------------------------------------------


def cpu_split() -> tuple[set[int] | None, set[int] | None]:
    """Subject on the first allowed CPU, the rest for broker and bench; no pinning on one CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


async def benchmark(args, machine: Machine, ref: Code | None) -> int:
    tag = uuid.uuid4().hex[:8]
    port = free_port()
    base = Settings(kafka_bootstrap=f"127.0.0.1:{port}", broker_port=port, data_dir=machine.workdir / "data",
                    topic_partitions=args.partitions, groups_topic=f"bench-groups-{tag}",
                    integrations_topic=f"bench-integrations-{tag}", dlq_topic=f"bench-dlq-{tag}",
                    log_level="INFO")
    pinning = (f"subject (ceiling loop, workers) on CPU {sorted(machine.subject_cpus)}, broker and this script "
               f"on CPU {sorted(machine.other_cpus)}" if machine.subject_cpus else "no CPU pinning (one CPU)")
    compared = f"; compared with {ref.label}, checked out in {ref.root}" if ref else ""
    print(f"freshstream stream benchmark (run {tag}); {args.partitions} partitions; "
          f"Python {sys.version.split()[0]}; {pinning}{compared}", flush=True)
    broker = await start_broker(machine, base)
    print(f"  embedded broker pid {broker.pid} on 127.0.0.1:{port}", flush=True)
    throughput = await measure_throughput(machine, base, args, tag, ref)
    memory = ref_memory = recovery = None
    if not args.skip_memory:
        memory, ref_memory, recovery = await measure_state(machine, base, args, tag,
                                                           ref if args.compare_memory else None)
    report(throughput, memory, ref_memory, recovery, args.open_chats)
    checks = [throughput["ok"]] + ([recovery["ok"]] if recovery else [])
    return 0 if all(checks) else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=20000, help="chats in the throughput load (default 20000)")
    parser.add_argument("--events-per-chat", type=int, default=10,
                        help="events per chat, >= 3: first message, assignment, ..., resolution (default 10)")
    parser.add_argument("--open-chats", type=int, default=100000,
                        help="open chats for the memory and recovery figures (default 100000)")
    parser.add_argument("--skip-memory", action="store_true", help="skip the memory and recovery figures")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of the bench topics (default 6)")
    parser.add_argument("--compare-with", metavar="REF",
                        help="a git ref (HEAD~3, a hash): also time that commit's worker (temporary worktree)")
    parser.add_argument("--compare-memory", action="store_true",
                        help="with --compare-with: also measure memory per open chat for REF")
    parser.add_argument("--repeats", type=int, default=1,
                        help="worker runs per tree, alternating REF and current; medians compared (default 1)")
    parser.add_argument("--ceiling-child", metavar="JSON", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ceiling_child is None:
        _check_args(parser, args)
    return args


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.events_per_chat < 3 or min(args.chats, args.open_chats, args.partitions, args.repeats) < 1:
        parser.error("--events-per-chat must be >= 3, and --chats, --open-chats, --partitions, --repeats >= 1")
    if args.compare_memory and (args.compare_with is None or args.skip_memory):
        parser.error("--compare-memory needs --compare-with and the memory measurement (no --skip-memory)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.ceiling_child is not None:
        return ceiling_child(json.loads(args.ceiling_child))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the children
    subject, other = cpu_split()
    if other:
        os.sched_setaffinity(0, other)
    try:
        with ref_worktree(args.compare_with) as ref, \
                tempfile.TemporaryDirectory(prefix="freshstream-bench-stream-") as tmp:
            return run(args, Machine(Path(tmp), Children(), subject, other), ref)
    except KeyboardInterrupt:
        print("\nbench: interrupted; stopping everything", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"bench/stream.py: error: {exc}", file=sys.stderr)
        return 1


def run(args, machine: Machine, ref: Code | None) -> int:
    """The benchmark; every child is stopped before the temp dir and REF's worktree are removed."""
    try:
        return asyncio.run(benchmark(args, machine, ref))
    finally:
        machine.children.stop_all()


if __name__ == "__main__":
    sys.exit(main())
