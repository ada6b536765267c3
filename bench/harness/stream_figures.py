"""The stream worker's three figures, each next to a baseline measured in the same run.

1. throughput: the worker's events/s next to a plain aiokafka loop's (harness.ceiling) on
   the same pre-loaded topic; with interval statistics on (the default, the headline figure,
   timed to the statistics complete) next to off (timed to the last contact), alternating;
   and next to REF's worker with --compare-with;
2. memory: a worker's RSS per open chat, next to the serialised state per chat (and REF's);
3. recovery: a restart with those open chats, next to a start on an empty changelog.

bench/stream.py runs all three, bench/throughput.py, memory.py and recovery.py one each
(recovery first fills a worker as the memory figure does); their docstrings say what is
measured and how. Every script takes the options below that it needs (add_options),
under the same names and defaults.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import uuid
from dataclasses import dataclass

from connectors.kafka.topics import ensure_topics
from harness.ceiling import run_ceiling
from harness.load import build_load, put_group_names, resolutions, state_sizes
from harness import WORK_TREE
from harness.processes import CURRENT, Code, Machine, Worker, broker_settings, run_bench, start_broker, tree_cpu
from harness.quix_app import APPS, INSTALL, quix_available, quix_changelog, run_quix
from harness.ref import ref_worktree, run_order
from harness.report import CEILING_GOAL, HEADER, met, print_table
from harness.topics import Contacts, Finals, Intervals, TopicWatch, changelog_records, preload, produce, read_finals
from streams.settings import Settings

__all__ = ["FIGURES", "Options", "add_options", "options_from", "main"]

FIGURES = ("throughput", "memory", "recovery")
MEMORY_GOAL_BYTES, RECOVERY_GOAL_S = 1024, 10.0
REF_GOAL = 0.90  # current / REF events/s: "within 10% of the commit before"
QUIX_GOAL = 1.5  # worker / Quix Streams events/s on the same work (issue 14, goal 1)
PEER_CEILING_GOAL = 0.30  # worker / plain-loop events/s (issue 14, goal 1)
CHANGELOG_GOAL = 0.15  # worker changelog records per event (issue 14, goal 2)
INTERVALS_GOAL = 0.90  # events/s with interval statistics on / off: "costs at most 10%"
RECOVERY_SAMPLE = 1000  # open chats resolved after the restart to prove their state survived


@dataclass
class Options:
    """What a run measures, and on what load; the scripts build it from their command lines."""

    figures: tuple[str, ...] = FIGURES
    chats: int = 20000
    events_per_chat: int = 10
    open_chats: int = 100000
    partitions: int = 6
    repeats: int = 1
    compare_with: str | None = None  # a git ref: REF's worker is timed too (figure 1)
    compare_memory: bool = False  # with compare_with: REF's memory per open chat too (figure 2)
    quix_app: str = "both"  # which Quix app(s) run (harness/quix_app.py); worker / Quix is against lean if it runs


_OPTIONS = {  # flag: argparse keywords; every script spells an option the same way
    "--chats": dict(type=int, default=Options.chats,
                    help=f"chats in the throughput load (default {Options.chats})"),
    "--events-per-chat": dict(type=int, default=Options.events_per_chat,
                              help="events per chat, >= 3: first message, assignment, ..., resolution "
                                   f"(default {Options.events_per_chat})"),
    "--open-chats": dict(type=int, default=Options.open_chats,
                         help=f"open chats for the memory and recovery figures (default {Options.open_chats})"),
    "--skip-memory": dict(action="store_true", help="skip the memory and recovery figures"),
    "--partitions": dict(type=int, default=Options.partitions,
                         help=f"partitions of the bench topics (default {Options.partitions})"),
    "--compare-with": dict(metavar="REF",
                           help="a git ref (HEAD~3, a hash): also time that commit's worker (temporary worktree)"),
    "--compare-memory": dict(action="store_true",
                             help="with --compare-with: also measure memory per open chat for REF"),
    "--quix-app": dict(choices=(*APPS, "both"), default=Options.quix_app,
                       help="the Quix Streams peer: lean (domain functions per record), processor (the "
                            "worker's ContactProcessor per record), or both (default; worker / Quix is "
                            "against lean, the processor app's figures print beside it)"),
    "--repeats": dict(type=int, default=Options.repeats,
                      help="worker runs per subject (intervals on, off; REF), alternating; medians compared "
                           f"(default {Options.repeats})"),
}


def add_options(parser: argparse.ArgumentParser, *flags: str, **helps: str) -> argparse.ArgumentParser:
    """The named flags of _OPTIONS; `helps` rewords one for a script (key: the flag's dest, e.g. compare_with)."""
    for flag in flags:
        keywords = dict(_OPTIONS[flag])
        keywords["help"] = helps.get(flag.lstrip("-").replace("-", "_"), keywords["help"])
        parser.add_argument(flag, **keywords)
    return parser


def options_from(parser: argparse.ArgumentParser, args: argparse.Namespace, figures: tuple[str, ...],
                 **fixed) -> Options:
    """Options from parsed flags (those a script does not take keep their defaults); errors as argparse's."""
    known = {name: getattr(args, name) for name in Options.__dataclass_fields__ if hasattr(args, name)}
    options = Options(figures=figures, **{**known, **fixed})
    if options.events_per_chat < 3 or min(options.chats, options.open_chats, options.partitions,
                                          options.repeats) < 1:
        parser.error("--events-per-chat must be >= 3, and --chats, --open-chats, --partitions, --repeats >= 1")
    if options.compare_memory and (options.compare_with is None or "memory" not in options.figures):
        parser.error("--compare-memory needs --compare-with and the memory measurement (no --skip-memory)")
    return options


def main(script: str, name: str, options: Options) -> int:
    """A script's whole run: `freshstream NAME benchmark`, the figures asked for, the summary."""
    return run_bench(script, lambda machine: benchmark(machine, options, name), prefix="stream")


async def benchmark(machine: Machine, options: Options, name: str) -> int:
    ref = machine.later(ref_worktree(options.compare_with))  # removed once every worker is stopped
    tag = uuid.uuid4().hex[:8]
    base = broker_settings(machine, topic_partitions=options.partitions, groups_topic=f"bench-groups-{tag}",
                           integrations_topic=f"bench-integrations-{tag}", dlq_topic=f"bench-dlq-{tag}",
                           log_level="INFO")
    compared = f"; compared with {ref.label}, checked out in {ref.root}" if ref else ""
    print(f"freshstream {name} benchmark (run {tag}); {options.partitions} partitions; "
          f"Python {sys.version.split()[0]}; {machine.pinning('subject (ceiling loop, workers)')}{compared}",
          flush=True)
    broker = await start_broker(machine, base)
    print(f"  embedded broker pid {broker.pid} on {base.bootstrap}", flush=True)
    throughput = memory = ref_memory = recovery = None
    if "throughput" in options.figures:
        throughput = await measure_throughput(machine, base, options, tag, ref)
    if "memory" in options.figures or "recovery" in options.figures:
        memory, ref_memory, recovery = await measure_state(machine, base, options, tag,
                                                           ref if options.compare_memory else None)
    rows = [HEADER]
    if throughput:
        rows += _throughput_rows(throughput)
    if "memory" in options.figures:
        rows += _memory_rows(memory, ref_memory, ref.label if ref else None)
    if recovery:
        rows += _recovery_rows(recovery, options.open_chats)
    print_table(rows)
    checks = ([throughput["ok"]] if throughput else []) + ([recovery["ok"]] if recovery else [])
    return 0 if all(checks) else 1


# --- 1. throughput ---------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """A worker timed in figure 1: a tree, and for the current one, interval statistics on or off.

    REF (`intervals` None) runs with its own defaults, timed as ever to its last contact: a
    tree from before interval statistics ignores FRESHSTREAM_INTERVALS_ENABLED.
    """

    code: Code
    intervals: bool | None
    slug: str  # runs are grouped (medians) and named by it: on, off, ref

    @property
    def label(self) -> str:
        return self.code.label if self.intervals is None else f"{self.code.label}, intervals {self.slug}"


ON, OFF = Subject(CURRENT, True, "on"), Subject(CURRENT, False, "off")
# harness/quix_app.py's two apps, not workers; the slug names its runs and its spec["app"] is QUIX_APPS[slug]
QUIX = Subject(Code("Quix Streams, lean app", WORK_TREE, "quix"), None, "quix")
QUIX_PROCESSOR = Subject(Code("Quix Streams, ContactProcessor app", WORK_TREE, "quixproc"), None, "quixproc")
QUIX_APPS = {QUIX.slug: "lean", QUIX_PROCESSOR.slug: "processor"}
QUIX_SUBJECTS = {"lean": (QUIX,), "processor": (QUIX_PROCESSOR,), "both": (QUIX, QUIX_PROCESSOR)}


def faust_changelog(app_id: str):
    """Which topics are a worker's table changelogs (Faust names them `<app id>-<table>-changelog`)."""
    return lambda name: name.startswith(f"{app_id}-") and name.endswith("-changelog")


def changelog_line(topics: dict[str, int], events: int, prefix: str) -> str:
    total = sum(topics.values())
    each = ", ".join(f"{name.removeprefix(prefix)} {n:,}" for name, n in topics.items()) or "none found"
    return f"changelog {total:,} records = {total / events:.3f} per event ({each})"


async def run_worker_throughput(machine: Machine, settings: Settings, events: int, chats: int,
                                code: Code = CURRENT, name: str = "worker-throughput",
                                intervals: bool = False) -> dict:
    """Worker from /readyz 200 to the emitted_at of its last contact; checks the contacts.

    With `intervals` the intervals topic is read too, until the latest revisions sum to
    `chats` contacts (then to its end): the figures are complete. `cpu`: the CPU seconds the
    worker used from ready until all was read (a companion figure less moved by neighbours).
    """
    await ensure_topics(settings)  # the contacts and intervals topics exist before the watches read them
    watch = TopicWatch(settings, settings.contacts_topic)
    interval_watch = TopicWatch(settings, settings.intervals_topic, Intervals(chats)) if intervals else None
    await watch.start()
    if interval_watch:
        await interval_watch.start()
    worker = Worker(machine, settings, name, code).start()
    try:
        ready = await worker.wait_ready()
        cpu_at_ready = tree_cpu(worker.proc.pid)
        print(f"  {code.label} worker pid {worker.proc.pid} ready {ready - worker.started_at:.1f} s after start; "
              "reading the pre-loaded topic", flush=True)
        timeout = max(600.0, events / 200)
        contacts = await watch.read_contacts(chats, timeout=timeout)
        totals = await worker.wait_counted(events, timeout=120)
        contacts = await watch.drain()
        statistics_read = None
        if interval_watch:
            await interval_watch.read_intervals(timeout=timeout)
            statistics_read = await interval_watch.drain()
        return {"ready": ready, "contacts": contacts, "totals": totals, "pid": worker.proc.pid,
                "intervals": statistics_read, "cpu": tree_cpu(worker.proc.pid) - cpu_at_ready}
    finally:
        await watch.stop()
        if interval_watch:
            await interval_watch.stop()
        await worker.stop()


async def time_worker(machine: Machine, settings: Settings, options: Options, subject: Subject, run: str) -> dict:
    """One run on the pre-loaded topic; its own app id (consumer group, changelogs), contacts and
    intervals topics.

    Own names make the worker read everything from scratch, and let REF keep its state in
    whatever format it has without meeting the current tree's. Timed from ready to the last
    contact's emitted_at, or with interval statistics on, to the moment they are complete:
    the last `updated_at` read when the latest revision per interval sums to `chats` contacts.
    """
    own = settings.replace(contacts_topic=f"{settings.contacts_topic}-{run}",
                           intervals_topic=f"{settings.intervals_topic}-{run}",
                           worker_app_id=f"{settings.worker_app_id}-{run}")
    if subject.intervals is not None:
        own = own.replace(intervals_enabled=subject.intervals)
    events = options.chats * options.events_per_chat
    worker = await run_worker_throughput(machine, own, events, options.chats, subject.code,
                                         f"worker-throughput-{run}", intervals=bool(subject.intervals))
    contacts: Contacts = worker["contacts"]
    contact_seconds = contacts.last_emitted_ms / 1000 - worker["ready"]
    seen_seconds = contacts.last_seen - worker["ready"]
    contact_rate = events / contact_seconds
    cpu = f"; worker CPU {worker['cpu']:.1f} s from ready = {worker['cpu'] / events * 1e6:.0f} µs per event"
    intervals_ok = None
    if worker["intervals"] is None:
        rate = contact_rate
        print(f"  {subject.label} worker: {events:,} events in {contact_seconds:.2f} s = {rate:,.0f} events/s "
              f"(ready → last emitted_at); {events / seen_seconds:,.0f} events/s to the last contact read here"
              f"{cpu}", flush=True)
    else:
        statistics_read: Intervals = worker["intervals"]
        seconds = statistics_read.completed_ms / 1000 - worker["ready"]
        rate = events / seconds
        print(f"  {subject.label} worker: {events:,} events in {seconds:.2f} s = {rate:,.0f} events/s "
              f"(ready → interval statistics complete); to its last contact's emitted_at {contact_seconds:.2f} s "
              f"= {contact_rate:,.0f} events/s; {events / seen_seconds:,.0f} events/s to the last contact read here"
              f"{cpu}", flush=True)
        intervals_ok = check_intervals(statistics_read, options.chats)
    contacts_ok = check_contacts(contacts, options.chats, worker["totals"])
    changelogs = await changelog_records(own, faust_changelog(own.worker_app_id))
    print(f"    {changelog_line(changelogs, events, own.worker_app_id + '-')}", flush=True)
    return {"rate": rate, "contact_rate": contact_rate, "contacts_ok": contacts_ok, "intervals_ok": intervals_ok,
            "contacts": len(contacts.ids), "cpu": worker["cpu"], "changelog": sum(changelogs.values()) / events,
            "finals": await read_finals(own, own.contacts_topic)}


async def time_quix(machine: Machine, settings: Settings, options: Options, subject: Subject, run: str) -> dict:
    """A Quix app (harness/quix_app.py, the subject's variant) on the pre-loaded topic, its own consumer
    group, state and contacts topic; timed as the worker without interval statistics, from its first record to
    the emitted_at of its last contact (it stamps them with the processor's clock, as the worker)."""
    events = options.chats * options.events_per_chat
    quix = await run_quix(machine, settings, events, run, QUIX_APPS[subject.slug])
    own = settings.replace(contacts_topic=quix["contacts_topic"])
    watch = TopicWatch(own, own.contacts_topic)
    await watch.start()
    try:
        await watch.read_contacts(options.chats, timeout=120)
        contacts: Contacts = await watch.drain()
    finally:
        await watch.stop()
    seconds = contacts.last_emitted_ms / 1000 - quix["first"]
    rate = events / seconds
    print(f"  {subject.code.label} pid {quix['pid']}: {events:,} events in {seconds:.2f} s = {rate:,.0f} events/s "
          f"(first record → last emitted_at); its CPU from the first record {quix['cpu']:.1f} s = "
          f"{quix['cpu'] / events * 1e6:.0f} µs per event", flush=True)
    contacts_ok = check_contacts(contacts, options.chats, {"processed": quix["events"],
                                                           "contacts produced": quix["contacts"]})
    changelogs = await changelog_records(settings, quix_changelog(quix["group"]))
    print(f"    {changelog_line(changelogs, events, 'changelog__')}", flush=True)
    return {"rate": rate, "contact_rate": rate, "contacts_ok": contacts_ok, "intervals_ok": None,
            "contacts": len(contacts.ids), "cpu": quix["cpu"], "changelog": sum(changelogs.values()) / events,
            "finals": await read_finals(own, own.contacts_topic)}


def check_equal(finals: dict[str, Finals], order: list[str]) -> bool:
    """Every run's final contacts equal the first run's in every field but emitted_at."""
    first = order[0]
    reference = finals[first].comparable()
    ok = True
    for run in order[1:]:
        other = finals[run].comparable()
        differ = sum(other.get(cid) != record for cid, record in reference.items())
        missing, extra = len(reference.keys() - other.keys()), len(other.keys() - reference.keys())
        same = differ == 0 and extra == 0
        ok &= same
        print(f"    {run} vs {first}: {len(other):,} vs {len(reference):,} final contacts; "
              f"{differ:,} differ or are missing ({missing:,} missing), {extra:,} extra: "
              f"{'equal but for emitted_at' if same else 'NOT EQUAL'}", flush=True)
    return ok


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


def check_intervals(intervals: Intervals, chats: int) -> bool:
    """The latest revision per interval sums to exactly `chats` contacts, read to the topic's end."""
    ok = intervals.complete
    print(f"    intervals: {intervals.records:,} records, {len(intervals.latest):,} intervals whose latest "
          f"revisions sum to {intervals.total:,} contacts (expected {chats:,}); {intervals.after:,} records "
          f"after the sum was reached: {'OK' if ok else 'FAILED'}", flush=True)
    return ok


async def measure_throughput(machine: Machine, base: Settings, options: Options, tag: str, ref: Code | None) -> dict:
    """The ceiling once, then every worker run (run_order) on the same pre-loaded topic."""
    settings = base.replace(raw_topic=f"bench-raw-{tag}", contacts_topic=f"bench-contacts-{tag}",
                            intervals_topic=f"bench-intervals-{tag}", worker_app_id=f"bench-worker-{tag}")
    events = options.chats * options.events_per_chat
    print(f"\n1. throughput: {options.chats:,} chats x {options.events_per_chat} events = {events:,} events; "
          "the current worker with interval statistics on (the default: its figure is the headline, timed "
          "to the statistics complete) and off (timed to its last contact), alternating", flush=True)
    await ensure_topics(settings)
    await put_group_names(settings)
    await preload(settings, settings.raw_topic, build_load(options.chats, options.events_per_chat, resolve=True))
    ceiling = await run_ceiling(machine, settings, events, options.chats)
    ceiling_rate = events / ceiling["seconds"]
    print(f"  ceiling (plain aiokafka loop): {events:,} events in {ceiling['seconds']:.2f} s = "
          f"{ceiling_rate:,.0f} events/s; {ceiling['contacts']:,} contacts acknowledged", flush=True)
    runs: dict[str, list[dict]] = {}
    finals: dict[str, Finals] = {}
    quix = QUIX_SUBJECTS[options.quix_app] if quix_available() else ()
    subjects = (*quix, OFF, ON)
    if not quix:
        print(f"  no Quix Streams runs: {INSTALL}", flush=True)
    order = run_order(Subject(ref, None, "ref") if ref else None, options.repeats, subjects)
    for n, subject in enumerate(order, 1):
        name = f"{subject.slug}{n}"
        if subject.slug in QUIX_APPS:
            print(f"  run {n}/{len(order)}: the {subject.code.label}", flush=True)
            run = await time_quix(machine, settings, options, subject, name)
        else:
            print(f"  run {n}/{len(order)}: {subject.label} worker", flush=True)
            run = await time_worker(machine, settings, options, subject, name)
        finals[name] = run.pop("finals")
        runs.setdefault(subject.slug, []).append(run)
    print("  final contacts of every run (folded by contact_id at the highest revision), field by field:",
          flush=True)
    equal = check_equal(finals, list(finals))
    return summarise_throughput(ceiling_rate, runs, ref, equal)


def summarise_throughput(ceiling: float, runs: dict[str, list[dict]], ref: Code | None, equal: bool) -> dict:
    """Median events/s per subject (one run each: that run): worker (intervals off: the same work) / Quix
    (the lean app when it ran, else the ContactProcessor app; the other beside it) and / ceiling,
    changelog records per event, on / off, and on / REF when comparing."""
    median = {slug: statistics.median(run["rate"] for run in slug_runs) for slug, slug_runs in runs.items()}
    each = {slug: ", ".join(f"{run['rate']:,.0f}" for run in slug_runs) for slug, slug_runs in runs.items()}
    changelog = {slug: statistics.median(run["changelog"] for run in slug_runs) for slug, slug_runs in runs.items()}
    quix = [subject for subject in (QUIX, QUIX_PROCESSOR) if subject.slug in runs]  # the first: worker / Quix
    figures = {"ceiling": ceiling, "worker": median["on"], "off": median["off"], "runs": len(runs["on"]),
               "quix": [(subject.code.label, median[subject.slug], changelog[subject.slug]) for subject in quix],
               "changelog": changelog, "equal": equal,
               "ref": None, "contacts_ok": all(run["contacts_ok"] for slug_runs in runs.values() for run in slug_runs),
               "contacts": sorted({run["contacts"] for slug_runs in runs.values() for run in slug_runs}),
               "intervals_ok": all(run["intervals_ok"] for run in runs["on"])}
    figures["ok"] = figures["contacts_ok"] and figures["intervals_ok"] and equal
    cpu_off = statistics.median(run["cpu"] for run in runs["off"])
    for n, subject in enumerate(quix):
        slug = subject.slug
        cpu_quix = statistics.median(run["cpu"] for run in runs[slug])
        goal = f" (goal >= {QUIX_GOAL})" if n == 0 else f" (beside; goal is against the {quix[0].code.label})"
        print(f"  worker (intervals off) vs {subject.code.label}, the same work: median {median['off']:,.0f} vs "
              f"{median[slug]:,.0f} events/s (off {each['off']}; Quix {each[slug]}); worker / Quix = "
              f"{median['off'] / median[slug]:.3f}{goal}; with intervals on: worker / Quix = "
              f"{median['on'] / median[slug]:.3f}; CPU from the first record / ready: Quix {cpu_quix:.1f} s, "
              f"worker {cpu_off:.1f} s", flush=True)
    if len(quix) == 2:
        print(f"  {quix[0].code.label} / {quix[1].code.label}: {median[quix[0].slug] / median[quix[1].slug]:.3f}",
              flush=True)
    print(f"  worker (intervals off) / ceiling = {median['off'] / ceiling:.3f} (goal >= {PEER_CEILING_GOAL}); "
          f"with intervals on {median['on'] / ceiling:.3f}", flush=True)
    quix_changelogs = "".join(f"; {subject.code.label} {changelog[subject.slug]:.3f}" for subject in quix)
    print(f"  changelog records per event, medians: worker intervals off {changelog['off']:.3f}, on "
          f"{changelog['on']:.3f}{quix_changelogs} (goal for the worker <= {CHANGELOG_GOAL})", flush=True)
    contact_rate = statistics.median(run["contact_rate"] for run in runs["on"])
    cpu = {slug: statistics.median(run["cpu"] for run in runs[slug]) for slug in ("on", "off")}
    print(f"  intervals on vs off: median {median['on']:,.0f} vs {median['off']:,.0f} events/s "
          f"(on {each['on']}; off {each['off']}); on / off = {median['on'] / median['off']:.3f} "
          f"(goal >= {INTERVALS_GOAL:.0%}); the on runs' contacts alone: median {contact_rate:,.0f} events/s; "
          f"worker CPU from ready: median {cpu['on']:.1f} vs {cpu['off']:.1f} s, off / on = "
          f"{cpu['off'] / cpu['on']:.3f}", flush=True)
    if ref:
        figures.update(ref=median["ref"], ref_label=ref.label)
        print(f"  current vs {ref.label}: median {median['on']:,.0f} vs {median['ref']:,.0f} events/s "
              f"(current, intervals on {each['on']}; REF, to its last contact {each['ref']}); "
              f"current / REF = {median['on'] / median['ref']:.3f} (goal >= {REF_GOAL:.0%})", flush=True)
    return figures


# --- 2. memory per open chat, and 3. recovery ------------------------------------------


async def measure_state(machine: Machine, base: Settings, options: Options, tag: str,
                        ref: Code | None) -> tuple[dict, dict | None, dict | None]:
    """A worker filled with open chats (figure 2), then restarted (figure 3, when asked for).

    REF's memory comes first when it is given (its worker is not restarted).
    """
    ref_memory = recovery = None
    if ref:
        ref_memory, ref_worker, _ = await measure_memory(machine, base, options, tag, ref)
        await ref_worker.stop()
    memory, worker, settings = await measure_memory(machine, base, options, tag)
    if ref_memory:
        print(f"  memory per open chat: current {memory['per_chat']:,.0f} B vs {ref.label} "
              f"{ref_memory['per_chat']:,.0f} B", flush=True)
    if "recovery" in options.figures:
        recovery = await measure_recovery(machine, settings, worker, memory["rss_before"], options, tag)
    else:
        await worker.stop()
    return memory, ref_memory, recovery


async def measure_memory(machine: Machine, base: Settings, options: Options, tag: str,
                         code: Code = CURRENT) -> tuple[dict, Worker, Settings]:
    """RSS of a fresh worker before and after it holds --open-chats open chats."""
    run = f"{code.slug}-{tag}"
    settings = base.replace(raw_topic=f"bench-raw-open-{run}", contacts_topic=f"bench-contacts-open-{run}",
                            worker_app_id=f"bench-open-{run}")
    n = options.open_chats
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


async def measure_recovery(machine: Machine, settings: Settings, worker: Worker, rss_idle: int, options: Options,
                           tag: str) -> dict:
    """Restart on the same app id (tables recover) vs a fresh app id (empty changelog)."""
    n = options.open_chats
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


# --- the summary rows -------------------------------------------------------------------


def _throughput_rows(figures: dict) -> list[tuple[str, ...]]:
    """The worker (intervals off: the same work) against Quix Streams and the ceiling, changelog
    records per event, the worker (intervals on) against the ceiling, against itself with them
    off, against REF when compared, and the contacts, intervals and equality checks."""
    ratio, many = figures["worker"] / figures["ceiling"], figures["runs"] > 1
    median = f", median of {figures['runs']}" if many else ""
    on_off = figures["worker"] / figures["off"]
    off, quix, changelog = figures["off"], figures["quix"], figures["changelog"]
    if not quix:  # not measured (no quixstreams): the worker's own figures still print
        peer = [("worker vs Quix Streams, same work (events/s)", f"worker {off:,.0f}", "not measured", "",
                 f">= {QUIX_GOAL}x", "")]
        quix_changelog, versus = "not measured", lambda n: ""
    else:
        (label, rate, quix_per_event), others = quix[0], quix[1:]
        peer = [(f"worker vs {label}, same work (events/s){median}", f"worker {off:,.0f}", f"Quix {rate:,.0f}",
                 f"{off / rate:.2f}x", f">= {QUIX_GOAL}x", met(off / rate >= QUIX_GOAL))]
        peer += [(f"worker vs {other}, same work (events/s){median}", f"worker {off:,.0f}",
                  f"Quix {other_rate:,.0f}", f"{off / other_rate:.2f}x", "(beside)", "")
                 for other, other_rate, _ in others]
        quix_changelog = f"Quix {quix_per_event:.3f}"
        versus = lambda n: f"{n / quix_per_event:.2f}x"  # noqa: E731
    rows = peer + [
            (f"worker vs plain loop (events/s){median}", f"worker {off:,.0f}",
             f"plain loop {figures['ceiling']:,.0f}", f"{off / figures['ceiling']:.1%}",
             f">= {PEER_CEILING_GOAL:.0%}", met(off / figures["ceiling"] >= PEER_CEILING_GOAL)),
            (f"changelog records per event{median}", f"worker {changelog['off']:.3f}", quix_changelog,
             versus(changelog["off"]), f"<= {CHANGELOG_GOAL}", met(changelog["off"] <= CHANGELOG_GOAL)),
            (f"changelog records per event, intervals on{median}", f"worker {changelog['on']:.3f}",
             quix_changelog, versus(changelog["on"]), "", ""),
            (f"throughput, intervals on (events/s){median}", f"worker {figures['worker']:,.0f}",
             f"plain loop {figures['ceiling']:,.0f}", f"{ratio:.1%}", f">= {CEILING_GOAL:.0%}",
             met(ratio >= CEILING_GOAL)),
            (f"intervals on vs off{median}", f"on {figures['worker']:,.0f}", f"off {figures['off']:,.0f}",
             f"{on_off:.1%}", f">= {INTERVALS_GOAL:.0%}", met(on_off >= INTERVALS_GOAL))]
    if figures["ref"]:
        vs = figures["worker"] / figures["ref"]
        rows.append((f"throughput vs REF{median}", f"current {figures['worker']:,.0f}",
                     f"{figures['ref_label']} {figures['ref']:,.0f}", f"{vs:.1%}", f">= {REF_GOAL:.0%}",
                     met(vs >= REF_GOAL)))
    contacts = " / ".join(f"{n:,}" for n in figures["contacts"])
    rows.append(("contacts emitted, every run", contacts, "chats", "", "exactly = chats",
                 met(figures["contacts_ok"])))
    rows.append(("interval statistics, on runs", "latest revisions", "chats", "", "sum = chats",
                 met(figures["intervals_ok"])))
    rows.append(("contacts equal, every run", "all fields", "first run's", "", "equal but emitted_at",
                 met(figures["equal"])))
    return rows


def _memory_rows(memory: dict | None, ref_memory: dict | None, ref_label: str | None) -> list[tuple[str, ...]]:
    if not memory:
        return []
    per_chat = memory["per_chat"]
    rows = [("memory per open chat", f"{per_chat:,.0f} B", f"state {memory['state_bytes']:.0f} B",
             f"{per_chat / memory['state_bytes']:.1f}x", f"< {MEMORY_GOAL_BYTES} B",
             met(per_chat < MEMORY_GOAL_BYTES))]
    if ref_memory:
        rows.append(("memory per open chat vs REF", f"current {per_chat:,.0f} B",
                     f"{ref_label} {ref_memory['per_chat']:,.0f} B",
                     f"{per_chat / ref_memory['per_chat']:.2f}x" if ref_memory["per_chat"] > 0 else "",
                     f"< {MEMORY_GOAL_BYTES} B", met(per_chat < MEMORY_GOAL_BYTES)))
    return rows


def _recovery_rows(recovery: dict | None, open_chats: int) -> list[tuple[str, ...]]:
    if not recovery:
        return []
    return [(f"restart, {open_chats:,} chats", f"{recovery['recovered']:.2f} s", f"empty {recovery['fresh']:.2f} s",
             f"{recovery['recovered'] - recovery['fresh']:+.2f} s", f"< {RECOVERY_GOAL_S:.0f} s",
             met(recovery["recovered"] < RECOVERY_GOAL_S)),
            ("state survived restart", "sampled chats", "", "", "all", met(recovery["ok"]))]
