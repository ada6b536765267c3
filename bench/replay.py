"""Benchmark: `freshstream replay` next to a plain aiokafka read of the same raw range.

Why (issue "replay throughput"): replay rebuilds a window's contacts by re-reading the raw
topic with fresh state, so after an outage it has days of raw events to get through, and
its speed decides how long contacts stay missing. Per-event overhead (measured), not
Kafka, bounds a Python consumer; this script shows how close replay comes to the cost of
merely reading and decoding the same records, both measured in the same run on the same
machine, so the ratio means something on a shared, noisy box:

- Load: chats × events-per-chat raw envelopes (native Freshchat webhooks in the shapes
  streams/domain/events.py normalises: a user message, an assignment to a group, bot/agent/user
  messages, a private note, and a resolution to end each chat; interleaved in event-time
  order, keyed and enveloped exactly as the ingress does) pre-loaded into a fresh raw
  topic, the group names put on a fresh groups topic first (harness/load.py, as the stream
  benchmarks).
- Floor (the baseline of issue 14, goal 6): the raw range fetched into memory first, in the
  batches replay hands its processor (connectors.replay.raw_batches), untimed; then, timed,
  the processor replay builds (connectors.replay.new_processor, dict tables) over them, its
  expiry scan and the release of parked contacts: the domain work alone, no Kafka. It runs
  before the first replay and after each; each replay is set against the faster floor beside
  it and the median of those ratios is the figure. Goal: replay >= 80% of the floor.
- Ceiling (kept for reference): a plain aiokafka read of that raw range (the consumer options replay uses;
  from the beginning to each partition's fetch high watermark, orjson-decoding every
  value, nothing else). Timed from before the consumer is created to after it stopped,
  the same scope as the replay; it runs once before and once after the replays and the
  faster run is the ceiling (the conservative choice).
- Replay: `connectors.replay.replay(settings, ReplayWindow(since=<earliest event time>,
  until=<last event time + 1 ms>), target)` into an empty target topic, timed around the
  whole call (group names, rebuild, read of the target, writes until the last contact is
  acknowledged). Its phases are timed by wrapping the module's private coroutines in the
  child (connectors/replay.py itself is untouched). `--repeats N` replays into N fresh
  targets; `--knob NAME=VALUE` sets one of connectors/replay.py's levers (FETCH_RECORDS,
  PREFETCH, KNOWN_PARTITIONS, BATCHED_WRITES, EARLY_CLIENTS) in the floor and replay
  children, to measure it against the default.
- Correctness: each first replay reports rebuilt = missing = chats; a second replay of the
  same window reports missing 0 and differing 0 (its time is printed too); the target
  then holds exactly `chats` contacts, distinct ids, none in Undefined_Queue.

Each measured run is a child process (`python bench/replay.py --child JSON`) on the same
footing: with 2+ CPUs it is pinned to one CPU and the embedded broker and this script to
the others, it times itself after its imports, and it writes its figures to a file. It
starts everything itself: an embedded broker (`python -m connectors.cli broker`) on a
free port with a temporary data dir, and unique topic names per run. Every child is
stopped on exit, error, Ctrl-C or SIGTERM (and Linux kills them if this script is killed
outright).

Run it from the repository root (about half a minute with the defaults):

    .venv/bin/python bench/replay.py [--chats 20000] [--events-per-chat 10] [--partitions 6]
        [--repeats N] [--knob NAME=VALUE ...] [--profile FILE [--py-spy PATH]]

--profile adds a third replay, into another empty topic, under `py-spy record` (raw
collapsed stacks written to FILE; `--py-spy` names the binary, default `py-spy` on PATH)
and prints its top hotspots; its time is not a measurement. Exit status: 0 when every
correctness check passed (a missed goal is reported, not a failure), 1 when one failed or
a step timed out, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import orjson
from aiokafka import TopicPartition

import connectors.replay as replay_module
from connectors.kafka.clients import make_consumer
from connectors.kafka.topics import ensure_topics
from harness.load import build_load, chat_payloads, put_group_names
from harness.processes import (BenchError, Machine, bench_env, broker_settings, child_setup, run_bench, start_broker,
                               tail)
from harness.report import met, print_table
from harness.topics import TopicWatch, create_topic, preload
from streams.settings import Settings

SCRIPT = Path(__file__).resolve()
PHASES = ("_group_names", "_rebuild", "_existing", "_write")  # connectors/replay.py's steps, timed in the child
FETCH = {"fetch_max_wait_ms": 100, "max_partition_fetch_bytes": 4 * 1024 * 1024}  # as replay's raw consumer
MAX_RECORDS = replay_module.FETCH_RECORDS  # as replay's getmany
KNOBS: dict = {}  # --knob NAME=VALUE, applied in every child
FLOOR_GOAL = 0.80  # replay next to the processor alone over the same records in memory (issue 14, goal 6)


# --- the children: what is measured ----------------------------------------------------


def child_main(spec: dict) -> int:
    """Entry point of `bench/replay.py --child JSON`: run one measurement, write its figures."""
    child_setup(set(spec["cpus"]) if spec["cpus"] else None)()  # pinned and tied to the parent, even under py-spy
    settings = Settings.from_env()
    for name, value in spec.get("knobs", {}).items():  # --knob: a lever of connectors/replay.py set otherwise
        setattr(replay_module, name, value)
    run = {"ceiling": _ceiling, "floor": _floor, "replay": _replay}[spec["mode"]]
    result = asyncio.run(run(settings, spec))
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


async def _ceiling(settings: Settings, spec: dict) -> dict:
    """Read the raw topic from the beginning to the fetch high watermarks, orjson-decoding each value."""
    started = time.perf_counter()
    consumer = make_consumer(settings, **FETCH)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(settings.raw_topic, p)
               for p in sorted(consumer.partitions_for_topic(settings.raw_topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends: dict[TopicPartition, int] = {}  # the first high watermark seen: the range is fixed at the start
        pending, events, first = set(tps), 0, None
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=500, max_records=MAX_RECORDS)
            if first is None and batches:
                first = time.perf_counter()
            for tp, records in batches.items():
                end = ends.setdefault(tp, consumer.highwater(tp))
                for record in records:
                    if record.offset >= end:
                        break
                    orjson.loads(record.value)
                    events += 1
            for tp in list(pending):
                if tp not in ends and consumer.highwater(tp) is not None:
                    ends[tp] = consumer.highwater(tp)
                if tp in ends and await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        read = time.perf_counter()
    finally:
        await consumer.stop()
    return {"events": events, "seconds": time.perf_counter() - started, "read_seconds": read - (first or read)}


async def _floor(settings: Settings, spec: dict) -> dict:
    """The domain floor: the raw range fetched into memory first, in the batches replay hands its
    processor (connectors.replay.raw_batches), untimed; then, timed, the processor replay builds
    (connectors.replay.new_processor: dict tables) over them, its expiry scan and the release of
    parked contacts, exactly as replay calls them. No Kafka while the clock runs."""
    module = replay_module
    since, until = spec["window"]
    window = module.ReplayWindow(since=since, until=until, lookback_ms=int(settings.replay_lookback_seconds * 1000))
    names = await module._group_names(settings)
    consumer = module.raw_consumer(settings)
    await consumer.start()
    try:
        partitions = await module._partitions(consumer, settings.raw_topic)
        where: dict[bytes, int] = {}
        batches = [batch async for batch in module.raw_batches(consumer, partitions, window, where, None)]
    finally:
        await consumer.stop()
    sent: list = []

    async def emit(records) -> None:
        sent.extend(records)

    started = time.perf_counter()
    processor = module.new_processor(settings, names, len(partitions), emit, where)
    for batch in batches:
        await processor.process(batch)
    await processor.expire_idle()
    await processor.release_pending()
    seconds = time.perf_counter() - started
    return {"events": sum(len(b) for b in batches), "seconds": seconds, "sent": len(sent), "batches": len(batches)}


async def _replay(settings: Settings, spec: dict) -> dict:
    """The whole replay() call, with its phases timed by wrapping the module's coroutines."""
    module = replay_module
    phases: dict[str, float] = {}

    def timed(name, step):
        async def wrapper(*args, **kwargs):
            began = time.perf_counter()
            try:
                return await step(*args, **kwargs)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - began
        return wrapper

    for name in PHASES:
        setattr(module, name, timed(name, getattr(module, name)))
    since, until = spec["window"]
    window = module.ReplayWindow(since=since, until=until, lookback_ms=int(settings.replay_lookback_seconds * 1000))
    started = time.perf_counter()
    report = await module.replay(settings, window, spec["target"])
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "report": report.counts(), "phases": phases}


# --- the parent: load, run the children, check, report ---------------------------------


def window_of(chats: int, per_chat: int) -> tuple[int, int]:
    """[earliest event time, last event time + 1 ms) of the load (chat i starts i seconds after chat 0)."""
    times = [at for index in {0, chats - 1} for at, _ in chat_payloads(index, per_chat, resolve=True)]
    return min(times), max(times) + 1


async def run_child(machine: Machine, settings: Settings, name: str, spec: dict, timeout: float,
                    profile: tuple[str, Path] | None = None) -> dict:
    """One measurement in a child pinned to the subject CPU; polls (never a blocked thread) so Ctrl-C is prompt."""
    stem = name.split()[0]  # "replay-2 (same window again)" → replay-2.json, replay-2.log
    result, log = machine.workdir / f"{stem}.json", machine.workdir / f"{stem}.log"
    spec = dict(spec, result=str(result), cpus=sorted(machine.subject_cpus or ()), knobs=KNOBS)
    cmd = [sys.executable, str(SCRIPT), "--child", json.dumps(spec)]
    cpus = machine.subject_cpus
    if profile:  # py-spy beside the broker; the child pins itself to the subject CPU
        py_spy, out = profile
        cmd = [py_spy, "record", "--output", str(out), "--format", "raw", "--rate", "200", "--", *cmd]
        cpus = machine.other_cpus
    proc = machine.children.start(name, cmd, env=bench_env(settings), log=log, cpus=cpus)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None:
            if time.monotonic() > deadline:
                raise BenchError(f"{name} did not finish within {timeout:.0f} s (log {log})")
            await asyncio.sleep(0.05)
    finally:
        await machine.children.stop(proc)
    if proc.returncode != 0 or not result.exists():
        raise BenchError(f"{name} exited with {proc.returncode}:\n{tail(log)}")
    figures = json.loads(result.read_text())
    figures["pid"] = proc.pid
    return figures


async def ceiling(machine: Machine, settings: Settings, events: int, name: str) -> dict:
    figures = await run_child(machine, settings, name, {"mode": "ceiling"}, timeout=max(300.0, events / 500))
    if figures["events"] != events:
        raise BenchError(f"{name} read {figures['events']:,} records, not the {events:,} pre-loaded")
    rate = events / figures["seconds"]
    print(f"  {name}: {events:,} records in {figures['seconds']:.2f} s = {rate:,.0f} events/s "
          f"(first record to last {figures['read_seconds']:.2f} s; pid {figures['pid']})", flush=True)
    return dict(figures, rate=rate)


async def floor(machine: Machine, settings: Settings, window: tuple[int, int], events: int, name: str) -> dict:
    spec = {"mode": "floor", "window": list(window)}
    figures = await run_child(machine, settings, name, spec, timeout=max(300.0, events / 200))
    if figures["events"] != events:
        raise BenchError(f"{name} processed {figures['events']:,} records, not the {events:,} pre-loaded")
    rate = events / figures["seconds"]
    print(f"  {name}: processor over {events:,} records in memory ({figures['batches']} batches) in "
          f"{figures['seconds']:.2f} s = {rate:,.0f} events/s; {figures['sent']:,} records emitted "
          f"(pid {figures['pid']})", flush=True)
    return dict(figures, rate=rate)


async def replay_run(machine: Machine, settings: Settings, window: tuple[int, int], target: str, events: int,
                     name: str, profile: tuple[str, Path] | None = None) -> dict:
    spec = {"mode": "replay", "window": list(window), "target": target}
    figures = await run_child(machine, settings, name, spec, timeout=max(600.0, events / 200), profile=profile)
    rate = events / figures["seconds"]
    counts = figures["report"]
    phases = figures["phases"]
    rest = figures["seconds"] - sum(phases.values())
    steps = ", ".join(f"{n.strip('_').replace('_', ' ')} {phases.get(n, 0.0):.2f} s" for n in PHASES)
    print(f"  {name}: {events:,} raw records in {figures['seconds']:.2f} s = {rate:,.0f} events/s "
          f"(pid {figures['pid']}); report {json.dumps(counts)}", flush=True)
    print(f"    phases: {steps}, compare and the rest {rest:.2f} s", flush=True)
    return dict(figures, rate=rate)


async def target_contents(settings: Settings, target: str):
    watch = TopicWatch(settings, target)
    await watch.start()
    try:
        return await watch.drain(timeout=120)
    finally:
        await watch.stop()


def check(label: str, ok: bool, checks: list[tuple[str, bool]]) -> None:
    checks.append((label, ok))
    print(f"  check: {label}: {'OK' if ok else 'FAILED'}", flush=True)


async def benchmark(args, machine: Machine) -> int:
    tag = uuid.uuid4().hex[:8]
    target = f"bench-replay-target-{tag}"
    settings = broker_settings(machine, topic_partitions=args.partitions, raw_topic=f"bench-replay-raw-{tag}",
                               contacts_topic=target, groups_topic=f"bench-replay-groups-{tag}",
                               integrations_topic=f"bench-replay-integrations-{tag}",
                               dlq_topic=f"bench-replay-dlq-{tag}", log_level="WARNING")
    chats, events = args.chats, args.chats * args.events_per_chat
    print(f"freshstream replay benchmark (run {tag}); {chats:,} chats x {args.events_per_chat} events = "
          f"{events:,} events; {args.partitions} partitions; Python {sys.version.split()[0]}; "
          f"{machine.pinning('measured children')}", flush=True)
    broker = await start_broker(machine, settings)
    print(f"  embedded broker pid {broker.pid} on {settings.bootstrap}", flush=True)
    await ensure_topics(settings)  # raw, groups and the (empty) target, with their configs
    await put_group_names(settings)
    await preload(settings, settings.raw_topic, build_load(chats, args.events_per_chat, resolve=True))
    window = window_of(chats, args.events_per_chat)
    print(f"  window [{window[0]}, {window[1]}) ms: earliest event time to 1 ms after the last", flush=True)

    print("\nmeasurements", flush=True)
    first_ceiling = await ceiling(machine, settings, events, "ceiling-1")
    floors = [await floor(machine, settings, window, events, "floor-0")]
    replays, targets = [], [target] + [f"{target}-{i}" for i in range(2, args.repeats + 1)]
    for i, into in enumerate(targets, 1):
        if i > 1:
            await create_topic(settings, into, args.partitions)
        replays.append(await replay_run(machine, settings, window, into, events, f"replay-{i}"))
        floors.append(await floor(machine, settings, window, events, f"floor-{i}"))
    second = await replay_run(machine, settings, window, target, events, "replay-again (same window as replay-1)")
    last_ceiling = await ceiling(machine, settings, events, "ceiling-2")
    best = max(first_ceiling["rate"], last_ceiling["rate"])
    # each replay against the faster of the floors just before and just after it: the conservative choice
    ratios = sorted(r["rate"] / max(floors[i]["rate"], floors[i + 1]["rate"]) for i, r in enumerate(replays))
    ratio = ratios[len(ratios) // 2]
    median = sorted(r["rate"] for r in replays)[len(replays) // 2]
    floor_rate = max(f["rate"] for f in floors)

    print("\ncorrectness", flush=True)
    checks: list[tuple[str, bool]] = []
    for i, r in enumerate(replays, 1):
        r1 = r["report"]
        check(f"replay-{i} rebuilt {r1['rebuilt']:,} and missing {r1['missing']:,} (expected {chats:,} and "
              f"{chats:,}; present {r1['present']:,}, differing {r1['differing']:,})",
              r1["rebuilt"] == chats and r1["missing"] == chats, checks)
    r2 = second["report"]
    check(f"replay-again missing {r2['missing']:,}, differing {r2['differing']:,} (expected 0 and 0; "
          f"rebuilt {r2['rebuilt']:,}, present {r2['present']:,})",
          r2["missing"] == 0 and r2["differing"] == 0, checks)
    contacts = await target_contents(settings, target)
    check(f"target holds {contacts.records:,} contacts, {len(contacts.ids):,} distinct ids, "
          f"{contacts.undefined:,} in Undefined_Queue, {contacts.without_history:,} without their first events "
          f"(expected {chats:,}, {chats:,}, 0, 0)",
          contacts.records == len(contacts.ids) == chats and contacts.undefined == contacts.without_history == 0,
          checks)

    each = ", ".join(f"{r['rate']:,.0f}" for r in replays)
    rows = [("figure", "events/s", "time", "ratio", "goal", ""),
            (f"domain floor: the processor over the records in memory (best of {len(floors)})",
             f"{floor_rate:,.0f}", f"{events / floor_rate:.2f} s", "", "", ""),
            (f"replay, writing every contact ({'median of ' + str(len(replays)) + ': ' + each if len(replays) > 1 else 'one run'})",
             f"{median:,.0f}", f"{events / median:.2f} s",
             f"{ratio:.1%}", f">= {FLOOR_GOAL:.0%} of floor", met(ratio >= FLOOR_GOAL)),
            ("replay, same window again (writes nothing)", f"{second['rate']:,.0f}", f"{second['seconds']:.2f} s",
             f"{second['rate'] / floor_rate:.1%}", "", ""),
            ("ceiling: plain aiokafka read + orjson (best of 2)", f"{best:,.0f}",
             f"{events / best:.2f} s", "", "", ""),
            ("replay next to the ceiling", "", "", f"{median / best:.1%}", "", ""),
            ("correctness checks", "", "", "", "all pass", met(all(ok for _, ok in checks)))]
    if len(ratios) > 1:
        print(f"\n  replay / floor per run (each against the faster floor beside it): "
              f"{', '.join(f'{r:.1%}' for r in ratios)}", flush=True)
    print_table(rows)

    if args.profile:
        await profile(machine, settings, window, events, args, tag)
    elif ratio < FLOOR_GOAL:
        print("\n  (below the goal: add --profile FILE to see where the replay's time goes)", flush=True)
    return 0 if all(ok for _, ok in checks) else 1


# --- optional profile ------------------------------------------------------------------


async def profile(machine: Machine, settings: Settings, window: tuple[int, int], events: int, args, tag: str):
    """A third replay into another empty topic under py-spy; top hotspots from its collapsed stacks."""
    target = f"bench-replay-profiled-{tag}"
    await create_topic(settings, target, args.partitions)
    out = Path(args.profile).resolve()
    print("\nprofile (py-spy record, 200 Hz; this run's time is not a measurement)", flush=True)
    figures = await replay_run(machine, settings, window, target, events, "replay-profiled",
                               profile=(args.py_spy, out))
    stacks = []
    for line in out.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        frames = [f for f in frames.split(";") if f.strip()]
        if frames and count.isdigit() and not any("importlib" in f for f in frames):  # imports are not replay
            stacks.append(([_frame(f) for f in frames], int(count)))
    total = sum(count for _, count in stacks)
    if not total:
        print(f"  no samples in {out}", flush=True)
        return
    own, inclusive = Counter(), Counter()
    for names, count in stacks:
        own[names[-1]] += count
        for name in set(names):
            if not name.endswith(("(replay.py)", "(<string>)")) and "(asyncio/" not in name:
                inclusive[name] += count  # not this script, not the event loop's plumbing
    print(f"  {total:,} samples of running code (imports left out) over {figures['seconds']:.1f} s; "
          f"stacks in {out}")
    print("  own time (the function on top of the stack):")
    for name, count in own.most_common(15):
        print(f"    {count / total:6.1%}  {name}")
    print("  time inside (the function anywhere on the stack):")
    for name, count in inclusive.most_common(25):
        print(f"    {count / total:6.1%}  {name}")


def _frame(frame: str) -> str:
    """`func (path/file.py:123)` → `func (path/file.py)`: one entry per function, not per line."""
    return re.sub(r":\d+\)$", ")", frame.strip())


# --- main ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=20000, help="chats in the load (default 20000)")
    parser.add_argument("--events-per-chat", type=int, default=10,
                        help="events per chat, >= 3: first message, assignment, ..., resolution (default 10)")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of the bench topics (default 6)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="replays into fresh targets, each between two floor runs; the median ratio (default 1)")
    parser.add_argument("--profile", metavar="FILE", help="also run a replay under py-spy, stacks to FILE")
    parser.add_argument("--py-spy", default="py-spy", metavar="PATH", help="the py-spy binary (default: on PATH)")
    parser.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                        help="set a lever of connectors/replay.py (FETCH_RECORDS, PREFETCH, KNOWN_PARTITIONS, "
                             "BATCHED_WRITES) in the floor and replay children, to measure it; VALUE is JSON")
    parser.add_argument("--child", metavar="JSON", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for knob in args.knob:
        name, _, value = knob.partition("=")
        if not hasattr(replay_module, name) or not name.isupper():
            parser.error(f"--knob {knob!r}: connectors/replay.py has no lever {name!r}")
        KNOBS[name] = json.loads(value)
    if args.child is None:
        if args.events_per_chat < 3 or min(args.chats, args.partitions, args.repeats) < 1:
            parser.error("--events-per-chat must be >= 3, and --chats, --partitions, --repeats >= 1")
        if args.profile:
            found = shutil.which(args.py_spy)
            if not found:
                parser.error(f"--profile needs py-spy: {args.py_spy!r} not found (give its path with --py-spy)")
            args.py_spy = found
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        return child_main(json.loads(args.child))
    return run_bench("bench/replay.py", lambda machine: benchmark(args, machine), prefix="replay")


if __name__ == "__main__":
    sys.exit(main())
