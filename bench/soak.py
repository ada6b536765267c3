"""Soak: sustained simulated traffic through ingress and worker on the embedded broker.

Why: a WFM feed runs for months. What matters is whether a steady rate is absorbed
with contacts out quickly, whether memory stays flat once warm, and whether every
contact the traffic implies comes out exactly once. This script posts simulator
traffic (connectors/simulation: both Freshchat formats, retries, out-of-order events,
reopens) at a fixed rate and reports:

- events/s accepted (answered 202), next to the rate asked for;
- end-to-end latency, from the 202 of the delivery that closes a chat's cycle (its
  resolution, or its deletion/spam mark) to the moment a separate consumer process
  (harness/contact_watch.py) reads that contact from the contacts topic: p50, p99, max;
- resident memory (VmRSS) of the ingress, the worker and the broker every
  --sample-seconds, and each one's slope (MiB per minute) once warm;
- at the end, the contacts read against the simulator's expectation: lost, unexpected,
  duplicated, differing (all must be 0 but duplicates, which at-least-once allows).

Event time runs faster than wall time. A worker keeps a closed chat for
FRESHSTREAM_CHAT_EXPIRY_SECONDS (7 days) of event time, to recognise late retries and
reopens; in real time the state would take a week to reach its steady size and
"flat once warm" could not be seen in minutes. So the traffic is posted in segments
of simulated chats, each 18 h of event time after the one before, sized so that
9 days of event time (a chat's last event comes within 2 days of its first, and it is
kept 7 days after) pass in the first --warm-share of the run. After that the
worker forgets about as many chats as it opens, and its memory must stop growing.
The embedded broker keeps every record in memory (docs/reference.md) and never deletes any,
so its memory grows with the data by design; its slope is reported per event
accepted, next to the bytes posted per event.

Run from the repository root (10 minutes with the defaults):

    .venv/bin/python bench/soak.py [--rate 500] [--duration 600] [--sample-seconds 10]
        [--seed 1] [--concurrency 64] [--warm-share 0.3] [--setting NAME=VALUE ...] [--disorder]

--disorder posts the same chats delivered adversarially (build_scenario(disorder=True)):
a contact may then be revised, only its last record must equal the expectation, and
latency runs from the 202 of the delivery that completed the cycle to its final record.

Nothing is pinned: ingress, worker, broker, watcher and this poster share the
machine's cores, as they do under `freshstream dev`. Exit status 0 when no contact
was lost, unexpected or differing, 1 otherwise or when a step timed out, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import sys
import time
from datetime import timedelta

from connectors.simulation.poster import post_scenario
from connectors.simulation.scenario import DEFAULT_START, Scenario, build_scenario
from harness.pipeline import ContactLog, Pipeline, Truth, percentile, segments, slope
from harness.processes import Machine, run_bench
from harness.report import HEADER, met, print_table
from streams.settings import Settings

SEGMENT_SPACING = timedelta(hours=18)  # chats of a segment start within 18 h (simulation_chats)
# A chat is forgotten 7 days (the default expiry) after it closed, and closes within 2 days of
# its segment's start: after this much event time as many chats are forgotten as opened.
STATE_KEPT = timedelta(days=7) + timedelta(days=2)
LATENCY_GOAL_S = 1.0
FLAT_GOAL = 0.05  # a warm process's fitted RSS may move less than 5% over the warm window
DRAIN_TIMEOUT_S = 180.0


def plan(args) -> tuple[int, int, float]:
    """(chats per segment, segments, deliveries per chat) for the rate, duration and warm-up asked."""
    probe = build_scenario("probe", 200, args.seed, disorder=args.disorder)
    per_chat = len(probe.deliveries) / 200
    segment_seconds = args.duration * args.warm_share * (SEGMENT_SPACING / STATE_KEPT)
    chats = max(10, round(args.rate * segment_seconds / per_chat))
    count = max(1, math.ceil(args.rate * args.duration / (chats * per_chat)))
    return chats, count, per_chat


class Sampler:
    """Every few seconds: memory of each role, events accepted, contacts read; one line printed each time."""

    def __init__(self, pipeline: Pipeline, truth: Truth, log: ContactLog, every: float) -> None:
        self.pipeline, self.truth, self.log, self.every = pipeline, truth, log, every
        self.samples: list[dict] = []
        self.began = time.time()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            self.take()

    def take(self) -> None:
        self.log.read()
        sample = {"t": time.time() - self.began, "accepted": self.truth.accepted, "contacts": self.log.records,
                  **self.pipeline.rss(), "cpu": self.pipeline.cpu()}
        previous = self.samples[-1] if self.samples else {"t": 0.0, "cpu": sample["cpu"]}
        elapsed = max(sample["t"] - previous["t"], 1e-9)
        busy = {role: (sample["cpu"][role] - previous["cpu"][role]) / elapsed for role in sample["cpu"]}
        self.samples.append(sample)
        print(f"  {sample['t']:6.0f} s  accepted {sample['accepted']:>9,}  contacts {sample['contacts']:>7,}  "
              f"RSS MiB: ingress {sample['ingress'] / 2**20:5.1f}  worker {sample['worker'] / 2**20:5.1f}  "
              f"broker {sample['broker'] / 2**20:6.1f}  CPU: ingress {busy['ingress']:4.0%}  "
              f"worker {busy['worker']:4.0%}  broker {busy['broker']:4.0%}", flush=True)


async def soak(args, machine: Machine) -> int:
    chats, count, per_chat = plan(args)
    print(f"freshstream soak: {args.rate:g} events/s for {args.duration:g} s; {count} segments of {chats:,} chats "
          f"(~{per_chat:.1f} deliveries per chat, each segment 18 h of event time later"
          f"{'; disorder' if args.disorder else ''}); "
          f"Python {sys.version.split()[0]}", flush=True)
    built = time.perf_counter()
    truth, scenario = Truth(disorder=args.disorder), Scenario()
    for part in segments(chats, count, args.seed, SEGMENT_SPACING, DEFAULT_START, args.disorder):
        truth.add(part)
        scenario.deliveries += part.deliveries
    posted_bytes = sum(len(d.body) for d in scenario.deliveries)
    print(f"  built {len(scenario.deliveries):,} deliveries, {len(truth.expected):,} expected contacts "
          f"in {time.perf_counter() - built:.1f} s", flush=True)

    pipeline = Pipeline.configure(machine, **args.setting)
    await pipeline.start()
    log = ContactLog(pipeline).start()
    print(f"  broker, ingress ({pipeline.ingress.url}) and worker ready; logs in {machine.workdir}", flush=True)
    sampler = Sampler(pipeline, truth, log, args.sample_seconds)
    sampling = asyncio.create_task(sampler.run())
    try:
        summary = await post_scenario(pipeline.ingress.url, "bench", pipeline.key, scenario, rate=args.rate,
                                      concurrency=args.concurrency, on_accepted=truth.on_accepted)
        posted_s = summary["elapsed_seconds"]
        print(f"  posted in {posted_s:.1f} s; waiting for the last contacts", flush=True)
        complete = await log.wait_for_all(set(truth.expected), DRAIN_TIMEOUT_S, final=truth.final)
        sampler.take()
    finally:
        sampling.cancel()
    result = truth.compare(log)
    warm = [s for s in sampler.samples if s["t"] >= args.duration * args.warm_share]
    report(args, truth, result, sampler.samples, warm, posted_s, posted_bytes / len(scenario.deliveries))
    if not complete:
        print(f"  worker logs: {', '.join(str(p) for p in pipeline.logs())}")
    bad = result["lost"] or result["unexpected"] or result["differing"]
    return 1 if bad else 0


def report(args, truth: Truth, result: dict, samples: list[dict], warm: list[dict], posted_s: float,
           bytes_per_delivery: float) -> None:
    latencies = result["latencies"]
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    rows = [HEADER]
    rate = truth.accepted / posted_s
    rows.append(("events accepted/s", f"{rate:,.0f}", f"asked {args.rate:g}", f"{rate / args.rate:.1%}", "= asked",
                 met(rate >= 0.97 * args.rate)))
    rows.append(("latency 202 → contact", f"p50 {p50 * 1000:,.0f} ms", f"p99 {p99 * 1000:,.0f} ms",
                 f"max {max(latencies, default=float('nan')) * 1000:,.0f} ms", f"p99 < {LATENCY_GOAL_S:g} s",
                 met(p99 < LATENCY_GOAL_S)))
    for role in ("ingress", "worker", "broker"):
        points = [(s["t"] / 60, s[role] / 2**20) for s in warm]
        per_min = slope(points)
        first, last = (points[0][1], points[-1][1]) if points else (0.0, 0.0)
        if role == "broker":
            per_event = slope([(s["accepted"], s[role]) for s in warm])
            rows.append((f"RSS {role} (warm)", f"{first:,.0f} → {last:,.0f} MiB", f"{per_min:+.2f} MiB/min",
                         f"{per_event:,.0f} B/event", f"keeps all data; {bytes_per_delivery:,.0f} B posted/event", ""))
        else:
            span = points[-1][0] - points[0][0] if points else 0.0
            growth = per_min * span / max(first, 1.0)  # the fitted line's rise over the warm window
            rows.append((f"RSS {role} (warm)", f"{first:,.0f} → {last:,.0f} MiB", f"{per_min:+.2f} MiB/min",
                         f"{growth:+.1%} fitted", f"flat (< {FLAT_GOAL:.0%})", met(abs(growth) < FLAT_GOAL)))
    rows.append(("contacts", f"{result['seen']:,} distinct", f"expected {result['expected']:,}",
                 f"{result['records']:,} records", "all, once", ""))
    for what in ("lost", "unexpected", "differing"):
        rows.append((f"  {what}", f"{len(result[what]):,}", "", "", "0", met(not result[what])))
    rows.append(("  duplicates", f"{len(result['duplicates']):,}", "", "", "at-least-once: allowed", ""))
    print_latency_by_minute(result["timed_latencies"])
    print_table(rows, f"summary ({len(samples)} memory samples, {len(warm)} after warm-up at "
                      f"{args.duration * args.warm_share:.0f} s)")
    for what in ("lost", "unexpected", "differing", "duplicates"):
        if result[what]:
            print(f"  {what}: {', '.join(result[what][:5])}{' …' if len(result[what]) > 5 else ''}")


def print_latency_by_minute(timed: list[tuple[float, float]]) -> None:
    """p50/p99/max per minute of the run, by when the closing delivery was accepted: drift shows here."""
    if not timed:
        return
    start = timed[0][0]
    minutes: dict[int, list[float]] = {}
    for at, latency in timed:
        minutes.setdefault(int((at - start) // 60), []).append(latency)
    print("\nlatency 202 → contact by minute of the run")
    for minute, values in sorted(minutes.items()):
        values.sort()
        print(f"  minute {minute + 1:>3}: {len(values):>6,} contacts  p50 {percentile(values, 0.5) * 1000:7,.0f} ms  "
              f"p99 {percentile(values, 0.99) * 1000:7,.0f} ms  max {values[-1] * 1000:7,.0f} ms")


def _coerce(name: str, text: str):
    """A --setting value as its Settings field's type."""
    kinds = {f.name: f.type for f in dataclasses.fields(Settings)}
    if name not in kinds:
        raise KeyError(f"no Settings field {name!r}")
    return {"int": int, "float": float}.get(str(kinds[name]), str)(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500.0, help="deliveries (events) per second (default 500)")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of traffic (default 600)")
    parser.add_argument("--sample-seconds", type=float, default=10.0, help="memory sampling period (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight at most (default 64)")
    parser.add_argument("--warm-share", type=float, default=0.3,
                        help="share of the run by which the worker's state reaches its steady size (default 0.3)")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a Settings field for every child, e.g. worker_fetch_max_wait_ms=1500 (repeatable)")
    parser.add_argument("--disorder", action="store_true",
                        help="deliver each chat's events adversarially (across closes, late retries)")
    args = parser.parse_args(argv)
    try:
        args.setting = {name: _coerce(name, value) for name, _, value in
                        (item.partition("=") for item in args.setting)}
    except (KeyError, ValueError) as exc:
        parser.error(f"--setting: {exc}")
    if min(args.rate, args.duration, args.sample_seconds, args.concurrency) <= 0 or not 0 < args.warm_share < 1:
        parser.error("--rate, --duration, --sample-seconds and --concurrency must be above 0; "
                     "--warm-share between 0 and 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_bench("bench/soak.py", lambda machine: soak(args, machine), prefix="soak", pin=False)


if __name__ == "__main__":
    sys.exit(main())
