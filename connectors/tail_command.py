"""`freshstream tail`: the live contact feed as JSON lines, for eyes and for pipes."""

from __future__ import annotations

import asyncio
import sys

from aiokafka import TopicPartition

from connectors.kafka import make_consumer, true_ends, wait_for_broker
from streams.settings import Settings

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    """Register the `tail` verb."""
    tail = sub.add_parser("tail", help="print contacts as JSON lines as they are emitted",
                          description="Follow the contacts topic; Ctrl-C stops.")
    tail.add_argument("--integration", help="only this integration's contacts")
    tail.add_argument("--queue", help="only this queue (the Freshchat group name, or Undefined_Queue)")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest contact kept")
    tail.add_argument("--max", type=int, help="stop after this many contacts")


async def run(args, settings: Settings, out=None, stop: asyncio.Event | None = None) -> int:
    """Print matching contacts until stopped (or until --max of them)."""
    out = out or _print_line
    await wait_for_broker(settings, timeout=10)
    consumer = make_consumer(settings, fetch_max_wait_ms=200)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(settings.contacts_topic, p)
                      for p in sorted(consumer.partitions_for_topic(settings.contacts_topic) or {0})]
        consumer.assign(partitions)
        await _position(consumer, partitions, args.from_beginning)
        return await _follow(consumer, args, out, stop or asyncio.Event())
    finally:
        await consumer.stop()


async def _position(consumer, partitions, from_beginning: bool) -> None:
    if from_beginning:
        await consumer.seek_to_beginning(*partitions)
        return
    for tp, end in (await true_ends(consumer, partitions)).items():
        consumer.seek(tp, end)


async def _follow(consumer, args, out, stop: asyncio.Event) -> int:
    printed = 0
    while not stop.is_set():
        for records in (await consumer.getmany(timeout_ms=500)).values():
            for record in records:
                if _matches(record.key, args):
                    out(record.value.decode())
                    printed += 1
                    if args.max and printed >= args.max:
                        return 0
    return 0


def _matches(key: bytes | None, args) -> bool:
    integration, _, queue = (key or b"").decode(errors="replace").partition("/")
    return (not args.integration or integration == args.integration) and (not args.queue or queue == args.queue)


def _print_line(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()

