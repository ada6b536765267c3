"""`freshstream lag`: committed offset, end, lag and lag in seconds per group, topic and partition."""

from __future__ import annotations

import asyncio

import orjson

from connectors.cli.arguments import positive
from connectors.kafka.topics import wait_for_broker
from connectors.kafka.lag import group_summary, measure_lag
from streams.settings import Settings

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    """Register the `lag` verb."""
    lag = sub.add_parser("lag", help="consumer lag per group, topic and partition",
                         description="Lag in offsets and in seconds (now minus the oldest unread record's time).")
    lag.add_argument("--json", action="store_true", help="a JSON array of rows, for scripts")
    lag.add_argument("--group", action="append", help="only this consumer group (repeatable)")
    lag.add_argument("--watch", type=positive(float), nargs="?", const=2.0, metavar="SECONDS",
                     help="print again every SECONDS (default 2) until Ctrl-C")


async def run(args, settings: Settings, out) -> int:
    """Print the lag once, or every --watch seconds."""
    await wait_for_broker(settings, timeout=10)
    while True:
        rows = await measure_lag(settings, args.group)
        out(orjson.dumps([r.as_dict() for r in rows]).decode() if args.json else _table(rows))
        if not args.watch:
            return 0
        await asyncio.sleep(args.watch)


def _table(rows) -> str:
    if not rows:
        return "no consumer group has committed offsets yet"
    lines = [("GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "LAG SECONDS")]
    lines += [(r.group, r.topic, str(r.partition), "-" if r.committed is None else str(r.committed),
               str(r.end), str(r.lag), f"{r.lag_seconds:.1f}") for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    text = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    for group, s in group_summary(rows).items():
        text.append(f"{group}: lag {s['lag']} records on {s['lagging']}/{s['partitions']} partitions, "
                    f"oldest unread {s['lag_seconds']:.1f} s")
    return "\n".join(text)
