"""`freshstream lag`: committed offset, end, lag and lag in seconds per group, topic and partition.

At an incident the question is "is the worker behind, or gone?": so an unknown --group is
an error naming the groups there are (a typo would otherwise print an empty table that
reads as "no lag"), each group's members are shown (lag and no members: nothing is
consuming), and every table says when it was measured, so a --watch scrollback is a
timeline.
"""

from __future__ import annotations

import asyncio
import time

import orjson

from connectors.cli.arguments import positive
from connectors.kafka.lag import consumer_groups, group_members, group_summary, measure_lag
from connectors.kafka.topics import wait_for_broker
from streams.domain.times import ms_to_short_time
from streams.errors import UsageError
from streams.settings import Settings

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    """Register the `lag` verb."""
    lag = sub.add_parser("lag", help="consumer lag per group, topic and partition, and each group's members",
                         description="Lag in offsets and in seconds (now minus the oldest unread record's time), "
                                     "and the members of each group.")
    lag.add_argument("--json", action="store_true", help="a JSON array of rows, for scripts")
    lag.add_argument("--group", action="append", help="only this consumer group (repeatable); it must exist")
    lag.add_argument("--watch", type=positive(float), nargs="?", const=2.0, metavar="SECONDS",
                     help="print again every SECONDS (default 2) until Ctrl-C, each table headed by its time")


async def run(args, settings: Settings, out) -> int:
    """Print the lag once, or every --watch seconds."""
    await wait_for_broker(settings, timeout=min(10, settings.broker_wait_seconds))
    if args.group:
        known = await consumer_groups(settings)
        unknown = [g for g in args.group if g not in known]
        if unknown:
            names = ", ".join(known) if known else "none yet (a group appears once a consumer joins it)"
            raise UsageError(f"no consumer group {unknown[0]!r} on {settings.bootstrap}; the groups are: {names}")
    while True:
        measured_at = int(time.time() * 1000)
        rows = await measure_lag(settings, args.group)
        if args.json:
            out(orjson.dumps([r.as_dict() for r in rows]).decode())
        else:
            groups = args.group or await consumer_groups(settings)
            out(_table(rows, await group_members(settings, groups), measured_at))
        if not args.watch:
            return 0
        await asyncio.sleep(args.watch)


def _table(rows, members: dict[str, list[str]], measured_at: int) -> str:
    text = [f"lag at {ms_to_short_time(measured_at - measured_at % 1000)}"]
    if rows:
        lines = [("GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "LAG SECONDS")]
        lines += [(r.group, r.topic, str(r.partition), "-" if r.committed is None else str(r.committed),
                   str(r.end), str(r.lag), f"{r.lag_seconds:.1f}") for r in rows]
        widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
        text += ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    elif not members:
        text.append("no consumer group has committed offsets yet")
    summary = group_summary(rows)
    for group in sorted(set(summary) | set(members)):
        s = summary.get(group)
        head = (f"{group}: lag {s['lag']} records on {s['lagging']}/{s['partitions']} partitions, "
                f"oldest unread {s['lag_seconds']:.1f} s" if s else f"{group}: no committed offsets yet")
        text.append(f"{head}; {_members(members.get(group, []), bool(s and s['lag']))}")
    return "\n".join(text)


def _members(names: list[str], lagging: bool) -> str:
    if not names:
        return "no members: nothing is consuming" + (" (is the worker running?)" if lagging else "")
    return f"{len(names)} member{'s' if len(names) != 1 else ''}: {', '.join(names)}"
