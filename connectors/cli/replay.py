"""`freshstream replay`: rebuild a window's contacts after an outage or a fix, idempotently."""

from __future__ import annotations

import sys
import time

import orjson

from connectors.kafka.topics import wait_for_broker
from connectors.replay import ReplayWindow, replay
from streams.domain.times import parse_time
from streams.errors import UsageError
from streams.settings import Settings

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    """Register the `replay` verb."""
    parser = sub.add_parser(
        "replay", help="rebuild the contacts resolved in a window from the raw topic",
        description="Rebuild contacts resolved in [--since, --until) with fresh state, compare them with the "
                    "target topic by contact_id, and write the missing and differing ones.")
    parser.add_argument("--since", required=True, help="start of the window (RFC 3339, e.g. 2024-05-06T00:00:00Z)")
    parser.add_argument("--until", help="end of the window, exclusive (default: now)")
    parser.add_argument("--integration", help="only this integration's contacts")
    parser.add_argument("--to", metavar="TOPIC", help="target topic (default FRESHSTREAM_CONTACTS_TOPIC)")
    parser.add_argument("--dry-run", action="store_true", help="write nothing; print the report")
    parser.add_argument("--json", action="store_true", help="print {rebuilt, present, missing, differing, retracted}")


async def run(args, settings: Settings, out) -> int:
    """Replay the window and print the report."""
    window = ReplayWindow(since=_time(args.since, "--since"),
                          until=_time(args.until, "--until") if args.until else int(time.time() * 1000),
                          integration=args.integration, lookback_ms=int(settings.replay_lookback_seconds * 1000))
    if window.until <= window.since:
        raise UsageError("--until must be after --since")
    await wait_for_broker(settings, timeout=10)
    report = await replay(settings, window, args.to or settings.contacts_topic, args.dry_run,
                          _progress if sys.stderr.isatty() else None)
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    if args.json:
        out(orjson.dumps(report.counts()).decode())
    else:
        verb = "would write" if args.dry_run else "written"
        out(f"rebuilt {report.rebuilt}, already present {report.present}, missing {report.missing} ({verb}), "
            f"differing {report.differing} ({verb}), no longer existing {report.retracted} (retraction {verb})")
        for contact_id in report.differing_ids:
            out(f"  differing: {contact_id}")
    return 0


def _time(text: str, option: str) -> int:
    value = parse_time(text)
    if value is None:
        raise UsageError(f"{option} {text!r} is not a time such as 2024-05-06T00:00:00Z")
    return value


def _progress(done: int, total: int) -> None:
    share = done / total if total else 1.0
    bar = "#" * int(share * 30)
    sys.stderr.write(f"\rreplay [{bar:<30}] {share:6.1%}  {done:,}/{total:,} raw records")
    sys.stderr.flush()
