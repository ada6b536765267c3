"""`freshstream replay`: rebuild a window's contacts after an outage or a fix, idempotently.

Replay writes into the topic that workforce management reads, often during an incident, so
everything a tired operator could get wrong is checked before any work starts: the times
(relative ones spare the arithmetic; one without a zone is refused, not guessed), the
integration (a typo would silently match nothing) and the target topic (a typo would create
a topic and write into it). The window is echoed back, and an empty one is answered with
the range the raw topic does hold.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import time

import orjson

from connectors.cli.arguments import time_window
from connectors.cli.progress import Progress
from connectors.integrations.registry import load_integrations
from connectors.kafka.topics import missing_topic, topic_names, wait_for_broker
from connectors.replay import ReplayReport, ReplayWindow, replay
from streams.domain.times import format_duration, ms_to_short_time
from streams.errors import UsageError
from streams.settings import Settings

__all__ = ["add_parser", "run"]

TIME_HELP = ("RFC 3339 with a zone (2024-05-06T09:00:00Z, 2024-05-06T11:00:00+02:00), or relative to now: "
             "now, 90m, now-2h, 1d, 1h30m")


def add_parser(sub) -> None:
    """Register the `replay` verb."""
    parser = sub.add_parser(
        "replay", help="rebuild the contacts resolved in a window from the raw topic",
        description="Rebuild contacts resolved in [--since, --until) with fresh state, compare them with the "
                    "target topic by contact_id, and write the missing and differing ones.")
    parser.add_argument("--since", required=True, help=f"start of the window: {TIME_HELP}")
    parser.add_argument("--until", help="end of the window, exclusive, written as --since (default: now)")
    parser.add_argument("--integration", help="only this integration's contacts (one of `integrations list`)")
    parser.add_argument("--to", metavar="TOPIC", help="target topic, which must exist (default "
                                                      "FRESHSTREAM_CONTACTS_TOPIC)")
    parser.add_argument("--create-topic", action="store_true", help="create the --to topic if it does not exist")
    parser.add_argument("--dry-run", action="store_true", help="write nothing; print the report")
    parser.add_argument("--json", action="store_true", help="print {rebuilt, present, missing, differing, retracted}")
    parser.add_argument("--jobs", type=_jobs, default=1, metavar="N",
                        help="fold groups of raw partitions in N processes, for a machine with more cores; the "
                             "report and the contacts are those of --jobs 1 (default 1)")


async def run(args, settings: Settings, out) -> int:
    """Check everything the operator typed, say what will be done, replay, and print the report."""
    now = int(time.time()) * 1000  # one "now" for --since and --until, in whole seconds: it is echoed back
    since, until = time_window(args.since, args.until, now)
    window = ReplayWindow(since=since, until=until, integration=args.integration,
                          lookback_ms=int(settings.replay_lookback_seconds * 1000))
    await wait_for_broker(settings, timeout=min(10, settings.broker_wait_seconds))
    target = args.to or settings.contacts_topic
    await _check(args, settings, target)
    _say(f"window {ms_to_short_time(since)} .. {ms_to_short_time(until)} ({format_duration(until - since)}), "
         f"{'integration ' + args.integration if args.integration else 'every integration'}, "
         f"from {settings.raw_topic} into {target}{' (dry run: nothing is written)' if args.dry_run else ''}")
    progress = Progress("replay")
    try:
        report = await replay(settings, window, target, args.dry_run, progress, jobs=args.jobs)
    finally:
        progress.close()
    if args.json:
        out(orjson.dumps(report.counts()).decode())
    else:
        verb = "would write" if args.dry_run else "written"
        out(f"rebuilt {report.rebuilt}, already present {report.present}, missing {report.missing} ({verb}), "
            f"differing {report.differing} ({verb}), no longer existing {report.retracted} (retraction {verb})")
        for contact_id in report.differing_ids:
            out(f"  differing: {contact_id}")
    if report.empty:
        (_say if args.json else out)(_empty_window(settings, report))
    return 0


async def _check(args, settings: Settings, target: str) -> None:
    """Refuse a missing raw topic, an unknown target or integration before minutes of reading."""
    topics = await topic_names(settings)
    if settings.raw_topic not in topics:
        raise missing_topic(settings, settings.raw_topic)
    if target not in topics and not args.create_topic:
        close = difflib.get_close_matches(target, sorted(topics), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        flag = f"--to {target!r}" if args.to else f"the contacts topic {target!r} (FRESHSTREAM_CONTACTS_TOPIC)"
        raise UsageError(f"{flag}: no such topic on {settings.bootstrap}; {hint}check the name, "
                         "or add --create-topic to create it")
    if args.integration:
        known = ([i.id for i in (await load_integrations(settings)).all()]
                 if settings.integrations_topic in topics else [])
        if args.integration not in known:
            names = ", ".join(known) if known else "none (see 'freshstream integrations add')"
            raise UsageError(f"--integration {args.integration!r}: no such integration; the integrations are: "
                             f"{names}")


def _jobs(text: str) -> int:
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes: use 1 or more (os.cpu_count() "
                                         "is a good start)")
    return jobs


def _empty_window(settings: Settings, report: ReplayReport) -> str:
    if report.raw_first is None:
        return f"no contact was resolved in the window: the raw topic {settings.raw_topic} holds no records"
    return (f"no contact was resolved in the window; the raw topic {settings.raw_topic} holds records "
            f"received from {ms_to_short_time(report.raw_first)} to {ms_to_short_time(report.raw_last)}")


def _say(line: str) -> None:
    """What replay is doing goes to stderr, so that --json output stays one document."""
    sys.stderr.write(f"replay: {line}\n")
    sys.stderr.flush()
