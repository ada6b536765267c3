"""Faults: kill, pause and rebalance the pipeline under simulated traffic, then count what was lost.

Why: contacts are what shifts are staffed from. A contact lost when a process dies,
or an event acknowledged with a 202 and then dropped, is a wrongly staffed shift. This
script runs ingress, worker and the embedded broker as child processes, posts simulator
traffic through the ingress without pause (a sender that retries 503s and refused
connections, as Freshchat and Marketplace apps do), and meanwhile, in an order drawn
from --seed, at random moments:

- worker-kill    SIGKILL a worker, start a replacement at once;
- ingress-kill   SIGKILL the ingress, restart it on the same port;
- broker-pause   SIGSTOP the broker (Tansu and its wrapper) for --pause-min..--pause-max
                 seconds, then SIGCONT;
- worker-join    start a second worker (a rebalance), and after a few seconds
- worker-leave   stop it with SIGTERM (another rebalance).

Recovery after a fault is the time from its start until a contact is read whose
closing delivery (resolution, deletion or spam mark) was answered 202 after the
injection step finished (process killed and its replacement started, broker resumed,
second worker started or exited): the pipeline carries new work end to end again.

At the end it reports, against the simulator's expectation and the ingress's answers:
contacts lost (must be 0), unexpected or differing (must be 0), duplicates (allowed,
at-least-once; each is a copy of an already emitted contact_id and must equal it; with
--disorder a copy may be a revision and only the last one must equal the expectation),
events answered 202 that are not on the raw topic (must be 0), agent crashes in the
worker logs, and the recovery time of each fault.

Run from the repository root (about 4 minutes with the defaults):

    .venv/bin/python bench/faults.py [--rounds 2] [--rate 200] [--seed 1]
        [--pause-min 5] [--pause-max 30] [--faults worker-kill,ingress-kill,broker-pause,rebalance]
        [--disorder]

--disorder posts the same chats delivered adversarially (build_scenario(disorder=True):
across closes, after their own close, closes re-posted while a later cycle is open).

tests/pipeline/test_faults.py runs one short round of every fault in the suite.
Exit status 0 when nothing was lost and every fault recovered, 1 otherwise, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from connectors.simulation.poster import RetryPolicy, post_scenario
from connectors.simulation.scenario import DEFAULT_START
from harness.pipeline import ContactLog, Pipeline, Truth, percentile, raw_event_ids, segments
from harness.processes import Ingress, Machine, run_bench

FAULTS = ("worker-kill", "ingress-kill", "broker-pause", "rebalance")  # rebalance = worker-join, then leave
SEGMENT_SECONDS = 10.0  # traffic is posted in segments this long, until the last fault recovered
SENDER = RetryPolicy(attempts=100_000, max_pause=1.0)  # a patient sender: retries until accepted


@dataclass
class Options:
    """What a run does; the test builds one directly, the command line through parse_args."""

    faults: tuple[str, ...] = FAULTS
    rounds: int = 2
    rate: float = 200.0
    seed: int = 1
    pause_min: float = 5.0
    pause_max: float = 30.0
    gap_min: float = 2.0  # seconds of normal traffic before each fault ...
    gap_max: float = 8.0  # ... drawn from this range
    recovery_timeout: float = 120.0
    drain_timeout: float = 180.0
    concurrency: int = 32
    disorder: bool = False  # adversarial delivery order (build_scenario(disorder=True))


@dataclass
class Fault:
    """One injected fault and how long the pipeline took to carry new work again."""

    name: str
    began: float  # wall clock
    detail: str = ""
    recovery: float | None = None  # seconds; None = not within the recovery timeout


@dataclass
class Report:
    """Everything a run found; `ok` says whether it holds."""

    faults: list[Fault] = field(default_factory=list)
    comparison: dict = field(default_factory=dict)
    missing_raw: list[str] = field(default_factory=list)  # event ids answered 202, absent from the raw topic
    accepted: int = 0
    crashes: list[str] = field(default_factory=list)
    logs: Path | None = None

    @property
    def ok(self) -> bool:
        c = self.comparison
        return (not c["lost"] and not c["unexpected"] and not c["differing"] and not self.missing_raw
                and all(f.recovery is not None for f in self.faults))


class Injector:
    """Injects the faults one after another, each after a random gap, and times each recovery."""

    def __init__(self, pipeline: Pipeline, truth: Truth, log: ContactLog, options: Options) -> None:
        self.pipeline, self.truth, self.log, self.options = pipeline, truth, log, options
        self.rng = random.Random(options.seed)
        self.faults: list[Fault] = []

    def plan(self) -> list[str]:
        order = []
        for _ in range(self.options.rounds):
            names = list(self.options.faults)
            self.rng.shuffle(names)
            order += names
        return order

    async def run(self) -> list[Fault]:
        for name in self.plan():
            await asyncio.sleep(self.rng.uniform(self.options.gap_min, self.options.gap_max))
            if name == "rebalance":
                await self._timed("worker-join", self.worker_join)
                await asyncio.sleep(self.rng.uniform(self.options.gap_min, self.options.gap_max))
                await self._timed("worker-leave", self.worker_leave)
            else:
                await self._timed(name, getattr(self, name.replace("-", "_")))
            if self.faults[-1].recovery is None:
                break  # the pipeline did not come back: further faults would measure nothing
        return self.faults

    async def _timed(self, name: str, inject) -> None:
        fault = Fault(name, time.time())
        self.faults.append(fault)
        fault.detail = await inject()
        fault.recovery = await self.recovered_after(fault.began, time.time())
        state = f"recovered in {fault.recovery:.1f} s" if fault.recovery is not None else "NOT recovered"
        print(f"  {time.strftime('%H:%M:%S')}  {name:<13} {fault.detail}; {state}", flush=True)

    async def recovered_after(self, began: float, injected: float) -> float | None:
        """Seconds from `began` until a contact is read whose closing delivery was accepted after `injected`.

        `injected` is when the injection step returned (the kill and restart made, the
        broker resumed, the second worker started or gone): work accepted after that
        can only come out once the pipeline is whole again.
        """
        deadline = time.monotonic() + self.options.recovery_timeout
        while time.monotonic() < deadline:
            self.log.read()
            seen = [read for cid, at in self.truth.resolved_202.items()
                    if at >= injected and (read := self.truth.settled(self.log, cid, at)) is not None]
            if seen:
                return min(seen) - began
            await asyncio.sleep(0.1)
        return None

    async def worker_kill(self) -> str:
        victim = self.rng.choice(self.pipeline.workers)
        self.pipeline.kill(victim)
        replacement = await self.pipeline.start_worker(wait=False)
        return f"SIGKILL {victim.name}; {replacement.name} started at once"

    async def ingress_kill(self) -> str:
        old = self.pipeline.ingress
        self.pipeline.kill(old)
        killed = time.time()
        new = Ingress(self.pipeline.machine, self.pipeline.settings, self.pipeline._name("ingress"))
        new.port = old.port  # senders keep their URL
        self.pipeline.ingress = new.start()
        await new.wait_ready()
        return f"SIGKILL {old.name}; {new.name} ready on the same port {time.time() - killed:.1f} s later"

    async def broker_pause(self) -> str:
        pids = self.pipeline.tansu_pids()
        seconds = self.rng.uniform(self.options.pause_min, self.options.pause_max)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        return f"SIGSTOP broker ({len(pids)} processes) for {seconds:.1f} s, then SIGCONT"

    async def worker_join(self) -> str:
        joined = await self.pipeline.start_worker(wait=False)
        return f"started {joined.name} ({len(self.pipeline.workers)} workers)"

    async def worker_leave(self) -> str:
        leaving = self.pipeline.workers[-1]
        code = await self.pipeline.stop_worker(leaving)
        return f"SIGTERM {leaving.name} (exit {code}); {len(self.pipeline.workers)} worker left"


async def post_until(pipeline: Pipeline, truth: Truth, options: Options, done: asyncio.Event) -> int:
    """Post segment after segment of simulated chats until `done` is set; the segment under way is finished."""
    per_segment = max(20, round(options.rate * SEGMENT_SECONDS / 16))  # ~16 deliveries per simulated chat
    posted = 0
    for part in segments(per_segment, 10**6, options.seed, timedelta(hours=18), DEFAULT_START, options.disorder):
        truth.add(part)
        await post_scenario(pipeline.ingress.url, "bench", pipeline.key, part, rate=options.rate,
                            concurrency=options.concurrency, retry=SENDER, on_accepted=truth.on_accepted)
        posted += len(part.deliveries)
        if done.is_set():
            return posted
    return posted


async def run(options: Options, machine: Machine) -> Report:
    """Start everything, post while injecting faults, then compare what came out with the truth."""
    pipeline = Pipeline.configure(machine)
    await pipeline.start()
    log = ContactLog(pipeline).start()
    truth = Truth(disorder=options.disorder)
    print(f"freshstream faults: {options.rounds} round(s) of {', '.join(options.faults)} at {options.rate:g} "
          f"events/s; seed {options.seed}{'; disorder' if options.disorder else ''}; logs in {machine.workdir}",
          flush=True)
    done = asyncio.Event()
    posting = asyncio.create_task(post_until(pipeline, truth, options, done))
    injector = Injector(pipeline, truth, log, options)
    try:
        faults = await injector.run()
    finally:
        done.set()
    posted = await posting
    print(f"  posted {posted:,} deliveries ({truth.accepted:,} events accepted); waiting for "
          f"{len(truth.expected):,} contacts", flush=True)
    await log.wait_for_all(set(truth.expected), options.drain_timeout, final=truth.final)
    on_raw = await raw_event_ids(pipeline.settings)
    crashes = [f"{path.name}: {line[:200]}" for path in pipeline.logs() if path.name.startswith("worker")
               for line in path.read_text(errors="replace").splitlines() if "Crashed reason=" in line]
    return Report(faults, truth.compare(log), sorted(truth.event_ids - on_raw), truth.accepted, crashes,
                  machine.workdir)


def print_report(report: Report) -> None:
    c = report.comparison
    print("\nsummary")
    rows = [("fault", "recovery", "what happened")]
    rows += [(f.name, f"{f.recovery:.1f} s" if f.recovery is not None else "NOT recovered", f.detail)
             for f in report.faults]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for n, row in enumerate(rows):
        print(f"  {row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}")
        if n == 0:
            print(f"  {'-' * widths[0]}  {'-' * widths[1]}  {'-' * 13}")
    lat = c["latencies"]
    print(f"\n  contacts expected {c['expected']:,}, seen {c['seen']:,} distinct in {c['records']:,} records; "
          f"latency 202 → contact p50 {percentile(lat, 0.5) * 1000:,.0f} ms, p99 {percentile(lat, 0.99):.1f} s, "
          f"max {max(lat, default=0):.1f} s")
    checks = [("contacts lost", len(c["lost"]), "0"), ("unexpected contacts", len(c["unexpected"]), "0"),
              ("contacts differing from the expectation", len(c["differing"]), "0"),
              ("events answered 202 missing from the raw topic", len(report.missing_raw), "0"),
              ("duplicates (copies of an emitted contact_id)", len(c["duplicates"]), "allowed"),
              ("agent crashes in worker logs", len(report.crashes), "reported")]
    for what, count, goal in checks:
        verdict = "" if goal != "0" else ("met" if count == 0 else "NOT met")
        print(f"  {what:<48} {count:>6,}   goal {goal:<8} {verdict}")
    for what, items in (("lost", c["lost"]), ("unexpected", c["unexpected"]), ("differing", c["differing"]),
                        ("missing from raw", report.missing_raw), ("crashes", report.crashes)):
        if items:
            print(f"  {what}: {'; '.join(items[:5])}{' …' if len(items) > 5 else ''}")
    if not report.ok:
        print(f"  logs: {report.logs}")


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="times each fault is injected (default 2)")
    parser.add_argument("--rate", type=float, default=200.0, help="deliveries per second (default 200)")
    parser.add_argument("--seed", type=int, default=1, help="seed of traffic, fault order and moments (default 1)")
    parser.add_argument("--pause-min", type=float, default=5.0, help="shortest broker pause, s (default 5)")
    parser.add_argument("--pause-max", type=float, default=30.0, help="longest broker pause, s (default 30)")
    parser.add_argument("--faults", default=",".join(FAULTS),
                        help=f"comma-separated subset of {', '.join(FAULTS)} (default all)")
    parser.add_argument("--disorder", action="store_true",
                        help="deliver each chat's events adversarially (across closes, late retries)")
    args = parser.parse_args(argv)
    faults = tuple(f.strip() for f in args.faults.split(",") if f.strip())
    unknown = [f for f in faults if f not in FAULTS]
    if unknown or not faults:
        parser.error(f"--faults: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(FAULTS)}")
    if args.rounds < 1 or args.rate <= 0 or not 0 < args.pause_min <= args.pause_max:
        parser.error("--rounds >= 1, --rate > 0 and 0 < --pause-min <= --pause-max")
    return Options(faults=faults, rounds=args.rounds, rate=args.rate, seed=args.seed,
                   pause_min=args.pause_min, pause_max=args.pause_max, disorder=args.disorder)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)

    async def faults(machine: Machine) -> int:
        report = await run(options, machine)
        print_report(report)
        return 0 if report.ok else 1

    # the logs are kept for a look when something failed
    return run_bench("bench/faults.py", faults, prefix="faults", pin=False, keep_failed=True)


if __name__ == "__main__":
    sys.exit(main())
