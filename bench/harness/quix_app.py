"""The worker's job as a Quix Streams app: the peer the worker's throughput is compared with.

Per raw record it runs freshstream's own ContactProcessor, the class the worker's agent
hands its batches to, over a batch of that one record: orjson-decode and normalise the
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
import logging
import subprocess
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path

from connectors.kafka.follower import TopicFollower
from harness import BENCH
from harness.processes import BenchError, Machine, bench_env, tail
from harness.topics import create_topic
from streams.domain.group_names import GroupNames
from streams.domain.metrics import WorkerMetrics
from streams.domain.processor import ContactProcessor
from streams.settings import Settings
from streams.worker.tables import partition_of

__all__ = ["run_quix", "quix_available", "quix_changelog", "INSTALL"]

INSTALL = "quixstreams is not installed: .venv/bin/pip install -e '.[bench]'"


class StateTable(MutableMapping):
    """A table for the ContactProcessor over the Quix State of the record being processed.

    The processor only touches the keys of the chat whose record it is applying (its chat
    state, that chat's pending keys), all within the record's key scope. Keys and values
    are bytes, stored as they are (RocksDBOptions with identity dumps/loads).
    """

    def __init__(self) -> None:
        self.state = None  # set before each record

    def __getitem__(self, key: bytes) -> bytes:
        value = self.state.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: bytes, default=None):
        return self.state.get(key, default)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.state.set(key, value)

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
    follower = TopicFollower(settings, settings.groups_topic, names.apply, loaded_level=logging.DEBUG)
    await follower.start()
    try:
        await follower.loaded.wait()
    finally:
        await follower.stop()
    return names


def main(argv: list[str]) -> int:
    """`python -m harness.quix_app SPEC_JSON`: run the app until it has taken spec["events"] records."""
    from quixstreams import Application, message_context
    from quixstreams.models.serializers import BytesDeserializer, BytesSerializer, Serializer
    from quixstreams.state.rocksdb import RocksDBOptions

    class SecondOfPair(Serializer):
        """The value of a (key, value) row: the contact bytes the processor built."""

        def __call__(self, value, ctx) -> bytes:
            return value[1]

    spec = json.loads(argv[0])
    settings = Settings(kafka_bootstrap=spec["bootstrap"], groups_topic=spec["groups"])
    names = asyncio.run(group_names(settings))
    partitions = spec["partitions"]

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

    app = Application(
        broker_address=spec["bootstrap"], consumer_group=spec["group"], auto_offset_reset="earliest",
        processing_guarantee="at-least-once", commit_interval=1.0, state_dir=spec["state_dir"],
        use_changelog_topics=True, producer_extra_config={"enable.idempotence": False},
        rocksdb_options=RocksDBOptions(dumps=lambda value: value, loads=lambda value: value),
        loglevel="INFO")
    raw = app.topic(spec["raw"], key_deserializer=BytesDeserializer(), value_deserializer=BytesDeserializer())
    contacts = app.topic(spec["contacts"], key_serializer=BytesSerializer(), value_serializer=SecondOfPair())
    counts = {"events": 0, "contacts": 0, "first": None, "cpu": 0.0}
    expected = spec["events"]

    def process(value: bytes, key: bytes, timestamp: int, headers, state) -> list[tuple[bytes, bytes]]:
        if counts["first"] is None:
            counts["first"], counts["cpu"] = time.time(), -time.process_time()
        chats.state = pending.state = state
        sent.clear()
        run_now(processor.process([(key, value, message_context().partition)]))
        counts["events"] += 1
        counts["contacts"] += len(sent)
        if counts["events"] >= expected:
            app.stop()  # the loop ends after this record; Quix commits its last checkpoint
        return list(sent)

    sdf = app.dataframe(raw)
    sdf = sdf.apply(process, stateful=True, expand=True, metadata=True)
    sdf.to_topic(contacts, key=lambda pair: pair[0])
    app.run()
    counts["cpu"] += time.process_time()  # this process's CPU (librdkafka's threads too) from the first record
    Path(spec["result"]).write_text(json.dumps(counts))
    return 0


def quix_changelog(group: str):
    """Which topics are the changelog of the app with this consumer group (Quix names them
    `changelog__<group>--<topic>--<store>`)."""
    return lambda name: name.startswith(f"changelog__{group}--")


def quix_available() -> bool:
    """Whether the bench extra is installed (throughput runs without the Quix subject if not)."""
    return importlib.util.find_spec("quixstreams") is not None


async def run_quix(machine: Machine, settings: Settings, events: int, run: str) -> dict:
    """The Quix app in a child process on the subject CPU, its own consumer group, state dir and
    contacts topic; its figures once it has stopped: `first` (wall time of its first record),
    `events`, `contacts` (produced), and the names of its contacts topic and consumer group."""
    if not quix_available():
        raise BenchError(INSTALL)
    contacts, group = f"{settings.contacts_topic}-{run}", f"{settings.worker_app_id}-{run}"
    await create_topic(settings, contacts, settings.topic_partitions)
    result, log = machine.workdir / f"{run}.json", machine.workdir / f"{run}.log"
    spec = {"bootstrap": settings.bootstrap, "raw": settings.raw_topic, "contacts": contacts, "group": group,
            "groups": settings.groups_topic, "partitions": settings.topic_partitions, "events": events,
            "state_dir": str(machine.workdir / run), "result": str(result)}
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
