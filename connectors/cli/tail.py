"""`freshstream tail`: the live contact feed as JSON lines, for eyes and for pipes.

With `--final` it folds revisions: each contact_id counts at its highest revision only (of
equal ones, the later emitted_at), and a retraction there means the contact does not exist.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterable, Mapping

import orjson
from aiokafka import TopicPartition

from connectors.cli.arguments import positive
from connectors.kafka.clients import make_consumer
from connectors.kafka.topics import missing_topic, true_ends, wait_for_broker
from streams.domain.contact import final_revisions, revision_order
from streams.domain.keys import split_contact_key
from streams.settings import Settings

__all__ = ["add_parser", "run", "fold_contacts", "raises_revision"]

logger = logging.getLogger(__name__)

FINAL_HELP = """\
fold revisions: a contact is re-emitted with revision+1 when a later event changes it, and
retracted (a record with "retracted": true) when it turns out not to exist. First, once
caught up with the end of every partition, print the folded set: one line per contact_id
at its highest revision, retracted ones left out, sorted by (resolved_at, contact_id);
without --from-beginning that set is empty. Then keep following, printing each record
that supersedes what was seen for its contact_id (a higher revision, or the same revision
with a later emitted_at: a recovered worker's re-emission), retractions included; exact
repeats and stale revisions are dropped. --max counts both kinds of line. With --queue, a
contact moved to another queue arrives as a retraction under its old queue and as its new
revision under the new one.
"""


def add_parser(sub) -> None:
    """Register the `tail` verb."""
    tail = sub.add_parser("tail", help="print contacts as JSON lines as they are emitted",
                          description="Follow the contacts topic; Ctrl-C stops. Without --final, "
                                      "every record is printed as written, revisions and retractions included.")
    tail.add_argument("--integration", help="only this integration's contacts")
    tail.add_argument("--queue", help="only this queue (the Freshchat group name, or Undefined_Queue)")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest contact kept")
    tail.add_argument("--final", action="store_true", help=FINAL_HELP)
    tail.add_argument("--max", type=positive(int), help="stop after printing this many lines")


def raises_revision(highest: dict[str, tuple], contact: Mapping) -> bool:
    """True when `contact` supersedes every record seen for its contact_id (streams.domain.contact.revision_order);
    records it in `highest`."""
    order = revision_order(contact)
    if order <= highest.get(contact["contact_id"], (0, "")):
        return False
    highest[contact["contact_id"]] = order
    return True


def fold_contacts(contacts: Iterable[Mapping]) -> list[Mapping]:
    """The contacts that exist: each contact_id at its highest revision, retracted ones left
    out, sorted by (resolved_at, contact_id). Order of the input does not matter: of two
    records with the same contact_id and revision (a repeat) the later emitted_at is kept."""
    return _existing(final_revisions(contacts))


def _existing(latest: Mapping[str, Mapping]) -> list[Mapping]:
    alive = [c for c in latest.values() if not c.get("retracted", False)]
    return sorted(alive, key=lambda c: (c.get("resolved_at") or "", c["contact_id"]))


async def run(args, settings: Settings, out=None, stop: asyncio.Event | None = None) -> int:
    """Print matching contacts until stopped (or until --max lines)."""
    out = out or _print_line
    await wait_for_broker(settings, timeout=min(10, settings.broker_wait_seconds))
    consumer = make_consumer(settings, fetch_max_wait_ms=200)
    await consumer.start()
    try:
        await consumer.topics()
        numbers = consumer.partitions_for_topic(settings.contacts_topic)
        if not numbers:  # following it would wait in silence for a topic nothing writes
            raise missing_topic(settings, settings.contacts_topic)
        partitions = [TopicPartition(settings.contacts_topic, p) for p in sorted(numbers)]
        consumer.assign(partitions)
        if not getattr(args, "final", False):
            await _position(consumer, partitions, args.from_beginning)
            return await _follow(consumer, args, out, stop or asyncio.Event())
        ends = await true_ends(consumer, partitions)  # where "caught up" is; moves the positions
        if args.from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            for tp, end in ends.items():
                consumer.seek(tp, end)
        return await _follow_final(consumer, ends, args, out, stop or asyncio.Event())
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


async def _follow_final(consumer, ends: dict, args, out, stop: asyncio.Event) -> int:
    """Fold up to the ends, print what exists, then print each record that raises a revision."""
    highest: dict[str, int] = {}
    latest: dict[str, Mapping] = {}  # only until the folded set is printed
    lines: dict[str, str] = {}
    while not await _caught_up(consumer, ends):
        if stop.is_set():
            return 0
        for contact, line in _contacts(await consumer.getmany(timeout_ms=500), args):
            if raises_revision(highest, contact):
                latest[contact["contact_id"]], lines[contact["contact_id"]] = contact, line
    printed = 0
    for contact in _existing(latest):
        out(lines[contact["contact_id"]])
        printed += 1
        if args.max and printed >= args.max:
            return 0
    latest.clear()
    lines.clear()
    while not stop.is_set():
        for contact, line in _contacts(await consumer.getmany(timeout_ms=500), args):
            if raises_revision(highest, contact):
                out(line)
                printed += 1
                if args.max and printed >= args.max:
                    return 0
    return 0


async def _caught_up(consumer, ends: dict) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


def _contacts(batches: dict, args):
    """(contact, line) for each matching record that is a contact; others are logged and skipped."""
    for records in batches.values():
        for record in records:
            if not _matches(record.key, args):
                continue
            try:
                contact = orjson.loads(record.value)
                if not isinstance(contact.get("contact_id"), str) or not isinstance(contact.get("revision", 1), int):
                    raise ValueError("no contact_id or revision")
            except (orjson.JSONDecodeError, ValueError, AttributeError, TypeError) as exc:
                logger.warning("skipped %s[%d]@%d: not a contact (%s)", record.topic, record.partition,
                               record.offset, exc)
                continue
            yield contact, record.value.decode()


def _matches(key: bytes | None, args) -> bool:
    integration, queue = split_contact_key(key)
    return (not args.integration or integration == args.integration) and (not args.queue or queue == args.queue)


def _print_line(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
