"""The worker's job as a Quix Streams app: the peer the worker's throughput is compared with.

Two variants (spec["app"]), each writing exactly the worker's contacts:

- `lean` (the default subject of worker / Quix): per record the least the job needs, with
  freshstream's domain functions called directly: orjson-decode the envelope,
  `normalise_or_skip`, the chat's `ChatState` from Quix's State (its `dumps()` bytes, read
  and written with `get_bytes`/`set_bytes`, no serializer), `apply`, and for each change
  `queue_for`, `revision_plan`, `build_contact`/`build_retraction` with the revision
  numbers and queues from `state.emitted`, as ContactProcessor._route/_emit do; the state
  is written back only when `apply` took the event (not for a duplicate or late one). No
  metrics, no watermarks (they feed the worker's timers), no write-ahead marks: Quix's own
  at-least-once checkpoint (contacts and changelog flushed, then offsets committed) is this
  app's delivery guarantee. A change whose group name is unknown would be parked by the
  worker until the name arrives; this app has no timers to release it, so it fails loudly
  (the bench load carries every name on the groups topic before either starts).
- `processor` (the first peer, kept behind `--quix-app processor`): per raw record
  freshstream's own ContactProcessor, the class the worker hands its batches to, over a
  batch of that one record, with its per-call overhead (a batch, the write-ahead marks,
  the metrics, one dumps per record). It does, in detail: orjson-decode and normalise the
envelope, load the chat's state, apply the event, count it in the worker's metrics, and on
a change route the cycle (queue from the group names, revision plan, build_contact, the
write-ahead mark) and dump the state. The chat table is Quix's State (RocksDB, with its
changelog topic), the contacts go to a contacts topic keyed as the worker's
(`<integration>/<queue>`), serialised as the worker serialises them. So the two write the
same contacts and the same chat states; what differs is the framework around them:

- Quix's checkpoint (at-least-once, commit every 1 s) flushes the contacts and the
  changelog, then commits offsets, so the processor gets no `flush` (the worker awaits
  its changelog before emitting), and its write-ahead confirmations (`confirmed`) stay in a
  process-local dict (the worker writes them to a table, once per partition per batch);
- the group names are read from the groups topic once at start, to its end, as
  `freshstream replay` does (the worker follows the topic for ever; on the bench load the
  names are all there before either starts);
- no timers: the worker's pending release (1 s) and expiry scan (60 s) have nothing to do
  on this load but the scan still reads every state once a minute; the worker also
  publishes names learnt from events (none on this load).

It stops itself once it has processed `events` records (Quix then commits its last
checkpoint) and writes its figures to spec["result"]: the wall time of the first record
it processed, the records processed, the contacts produced. The parent (stream_figures)
starts it on the subject CPU:

    python -m harness.quix_app SPEC_JSON    (working directory bench/; its RocksDB in spec["state_dir"])

The embedded broker (Tansu) has no idempotent producer, so `enable.idempotence` is off
(Quix turns it on by default); at-least-once needs no transactions.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path

import orjson

from connectors.kafka.follower import read_once
from harness import BENCH
from harness.processes import BenchError, Machine, bench_env, tail
from harness.topics import create_topic
from streams.domain.chat import ChatState, Outcome, apply, digest
from streams.domain.contact import build_contact, build_retraction, queue_for, revision_plan
from streams.domain.events import Skip, normalise_or_skip
from streams.domain.group_names import GroupNames
from streams.domain.keys import contact_key
from streams.domain.metrics import WorkerMetrics
from streams.domain.processor import ContactProcessor
from streams.settings import Settings
from streams.worker.tables import partition_of

__all__ = ["run_quix", "quix_available", "quix_changelog", "INSTALL", "APPS", "lean_job"]

INSTALL = "quixstreams is not installed: .venv/bin/pip install -e '.[bench]'"
APPS = ("lean", "processor")  # spec["app"]: the variants above
_NOT_APPLIED = {Outcome.DUPLICATE, Outcome.LATE}  # apply() left the state as it was


class StateTable(MutableMapping):
    """A table for the ContactProcessor over the Quix State of the record being processed.

    The processor only touches the keys of the chat whose record it is applying (its chat
    state, that chat's pending keys), all within the record's key scope. Keys and values
    are bytes, stored as they are (State.get_bytes/set_bytes: no serializer).
    """

    def __init__(self) -> None:
        self.state = None  # set before each record

    def __getitem__(self, key: bytes) -> bytes:
        value = self.state.get_bytes(key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: bytes, default=None):
        return self.state.get_bytes(key, default)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.state.set_bytes(key, value)

    def __delitem__(self, key: bytes) -> None:
        self.state.delete(key)

    def __contains__(self, key) -> bool:
        return self.state.exists(key)

    def __iter__(self):  # only the timers iterate a table; this app runs none
        raise NotImplementedError("a Quix State is scoped to one key: it cannot be iterated")

    def __len__(self) -> int:
        raise NotImplementedError("a Quix State is scoped to one key")


def run_now(coroutine):
    """Run a coroutine that never suspends (the processor with an emit that only collects, its
    lock uncontended) to its end, here, without an event loop; fail loudly if it does suspend."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("the processor suspended: it awaited something that is not ready")


async def group_names(settings: Settings) -> GroupNames:
    """The groups topic read once, to its end, as `freshstream replay` reads it."""
    names = GroupNames()
    await read_once(settings, settings.groups_topic, names.apply, timeout=60)
    return names


def lean_job(names: GroupNames, expiry_ms: int, clock=time.time):
    """The lean variant's per-record function: (raw value, Quix State) -> the contact records
    [(key, value bytes)] this record produces, the chat state written back to the State.

    Each change becomes what ContactProcessor._emit writes: revision_plan from the cycle's
    last emitted revision and queue (state.emitted), a retraction under the old queue and/or
    the new revision, and state.emitted updated to [last revision, digest, queue]."""
    loads, dumps = orjson.loads, orjson.dumps

    def job(value: bytes, state) -> list[tuple[bytes, bytes]]:
        try:
            envelope = loads(value)
        except orjson.JSONDecodeError:
            envelope = None
        event = normalise_or_skip(envelope)
        if isinstance(event, Skip):
            return []
        chat = event.chat_key.encode()
        raw = state.get_bytes(chat)
        chat_state, changes, verdict = apply(ChatState.loads(raw) if raw is not None else None, event, expiry_ms)
        if verdict in _NOT_APPLIED:
            return []
        integration, conversation = event.integration, event.conversation_id
        if event.group_name and event.group_id:
            names.learn(integration, event.group_id, event.group_name)
        records = []
        if changes:
            known, now, emitted = names.for_integration(integration), int(clock() * 1000), chat_state.emitted
            for change in changes:
                cycle, closed = change.cycle, change.closed
                queue = None if closed is None else queue_for(closed, known)
                if closed is not None and queue is None:
                    raise LookupError(f"no group name for {integration} group {closed.group_id}: the worker "
                                      "would park this contact; the lean Quix app has no timers to release it")
                revision, _, old_queue = emitted.get(cycle, (0, None, None))
                for revision, target, retracted in revision_plan(revision, old_queue, queue):
                    record = (build_retraction(integration, conversation, cycle, target, revision, now) if retracted
                              else build_contact(integration, conversation, closed, target, now, revision))
                    records.append((contact_key(integration, target), dumps(record)))
                emitted[cycle] = [revision, digest(closed) if closed is not None else None, queue]
        state.set_bytes(chat, chat_state.dumps())
        return records

    return job


def main(argv: list[str]) -> int:
    """`python -m harness.quix_app SPEC_JSON`: run the app until it has taken spec["events"] records."""
    from quixstreams import Application
    from quixstreams.models.serializers import BytesDeserializer, BytesSerializer, Serializer

    class SecondOfPair(Serializer):
        """The value of a (key, value) row: the contact bytes built for it."""

        def __call__(self, value, ctx) -> bytes:
            return value[1]

    spec = json.loads(argv[0])
    settings = Settings(kafka_bootstrap=spec["bootstrap"], groups_topic=spec["groups"])
    names = asyncio.run(group_names(settings))
    app = Application(
        broker_address=spec["bootstrap"], consumer_group=spec["group"], auto_offset_reset="earliest",
        processing_guarantee="at-least-once", commit_interval=1.0, state_dir=spec["state_dir"],
        use_changelog_topics=True, producer_extra_config={"enable.idempotence": False}, loglevel="INFO")
    raw = app.topic(spec["raw"], key_deserializer=BytesDeserializer(), value_deserializer=BytesDeserializer())
    contacts = app.topic(spec["contacts"], key_serializer=BytesSerializer(), value_serializer=SecondOfPair())
    counts = {"events": 0, "contacts": 0, "first": None, "cpu": 0.0}
    expected = spec["events"]

    def took(records: list) -> list:
        """Count a processed record; stop the app after the last one (Quix commits its last checkpoint)."""
        counts["events"] += 1
        counts["contacts"] += len(records)
        if counts["events"] >= expected:
            app.stop()  # the loop ends after this record
        return records

    def started() -> None:
        counts["first"], counts["cpu"] = time.time(), -time.process_time()

    sdf = app.dataframe(raw)
    if spec["app"] == "lean":
        job = lean_job(names, settings.chat_expiry_seconds * 1000)

        def process(value: bytes, state) -> list[tuple[bytes, bytes]]:
            if counts["first"] is None:
                started()
            return took(job(value, state))

        sdf = sdf.apply(process, stateful=True, expand=True)
    else:
        sdf = sdf.apply(processor_job(settings, names, spec["partitions"], started, took), stateful=True,
                        expand=True, metadata=True)
    sdf.to_topic(contacts, key=lambda pair: pair[0])
    app.run()
    counts["cpu"] += time.process_time()  # this process's CPU (librdkafka's threads too) from the first record
    Path(spec["result"]).write_text(json.dumps(counts))
    return 0


def processor_job(settings: Settings, names: GroupNames, partitions: int, started, took):
    """The processor variant's per-record function: ContactProcessor.process over a batch of one
    record, its tables (chats, pending) over the record's Quix State."""
    from quixstreams import message_context

    chats, pending = StateTable(), StateTable()
    sent: list[tuple[bytes, bytes]] = []

    async def emit(records: list[tuple[bytes, bytes]]) -> None:
        sent.extend(records)

    processor = ContactProcessor(
        chats=chats, pending=pending, names=names, emit=emit, metrics=WorkerMetrics(),
        expiry_ms=settings.chat_expiry_seconds * 1000, group_wait_ms=int(settings.group_wait_seconds * 1000),
        partition_of=lambda key: partition_of(key, partitions),
        tombstone_ms=int(settings.chat_tombstone_days * 86_400_000),
        skew_ms=int(settings.event_time_skew_seconds * 1000), flush=None, confirmed={})
    first = True

    def process(value: bytes, key: bytes, timestamp: int, headers, state) -> list[tuple[bytes, bytes]]:
        nonlocal first
        if first:
            started()
            first = False
        chats.state = pending.state = state
        sent.clear()
        run_now(processor.process([(key, value, message_context().partition)]))
        return took(list(sent))

    return process


def quix_changelog(group: str):
    """Which topics are the changelog of the app with this consumer group (Quix names them
    `changelog__<group>--<topic>--<store>`)."""
    return lambda name: name.startswith(f"changelog__{group}--")


def quix_available() -> bool:
    """Whether the bench extra is installed (throughput runs without the Quix subject if not)."""
    return importlib.util.find_spec("quixstreams") is not None


async def run_quix(machine: Machine, settings: Settings, events: int, run: str, app: str = "lean") -> dict:
    """The Quix app (`app`: one of APPS) in a child process on the subject CPU, its own consumer group, state dir and
    contacts topic; its figures once it has stopped: `first` (wall time of its first record),
    `events`, `contacts` (produced), and the names of its contacts topic and consumer group."""
    if not quix_available():
        raise BenchError(INSTALL)
    contacts, group = f"{settings.contacts_topic}-{run}", f"{settings.worker_app_id}-{run}"
    await create_topic(settings, contacts, settings.topic_partitions)
    result, log = machine.workdir / f"{run}.json", machine.workdir / f"{run}.log"
    spec = {"bootstrap": settings.bootstrap, "raw": settings.raw_topic, "contacts": contacts, "group": group,
            "groups": settings.groups_topic, "partitions": settings.topic_partitions, "events": events,
            "state_dir": str(machine.workdir / run), "result": str(result), "app": app}
    timeout = max(600.0, events / 200)
    proc = machine.children.start(run, [sys.executable, "-m", "harness.quix_app", json.dumps(spec)],
                                  env=bench_env(settings), log=log, cwd=BENCH, cpus=machine.subject_cpus)
    try:
        code = await asyncio.to_thread(proc.wait, timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"the Quix app did not finish in {timeout:.0f} s (log {log})") from None
    finally:
        await machine.children.stop(proc)
    if code != 0 or not result.exists():
        raise BenchError(f"the Quix app exited with {code}:\n{tail(log)}")
    return {**json.loads(result.read_text()), "contacts_topic": contacts, "group": group, "pid": proc.pid}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
