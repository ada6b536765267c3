"""`freshstream intervals`: the interval statistics of a time range, as a table for people, or as
JSON, CSV and the import files of two workforce-management products.

The intervals topic is compacted, but the embedded broker never compacts and Kafka compacts
late, so a reader sees the revisions of an interval too: per key, the highest `revision` is the
truth (of two equal ones, the later `updated_at`). The topic is read from its beginning to the
end of every partition, the ends taken from fetch high watermarks (`true_ends`).

The WFM files are Genesys Cloud's historical data import and, for injixo, whose file import is
not published, the fields of its contact-events API as columns. A WFM reads a missing row as
"no data", not as "no contacts", so both carry a row of zeros for every interval of the range
that has begun, for every queue the selection holds. Files are always UTC; --tz is for people.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
import time
from collections.abc import Iterable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from aiokafka import TopicPartition

from connectors.cli.arguments import time_window
from connectors.cli.progress import Progress
from connectors.kafka.clients import make_consumer
from connectors.kafka.topics import missing_topic, true_ends, wait_for_broker
from streams.domain.contact import UNDEFINED_QUEUE
from streams.domain.interval_figures import INTERVAL_MINUTES
from streams.domain.keys import split_interval_key
from streams.domain.times import (ms_to_short_time, ms_to_zone_label, ms_to_zone_time,
                                  parse_time)
from streams.errors import UsageError
from streams.settings import ENV_PREFIX, Settings

__all__ = ["add_parser", "run", "zone", "FORMATS", "RECORD_FIELDS", "GENESYS_COLUMNS", "INJIXO_COLUMNS"]

logger = logging.getLogger(__name__)

FORMATS = ("table", "json", "csv", "genesys-csv", "injixo-csv")
UTC_ONLY = ("json", "genesys-csv", "injixo-csv")
# The fields of schemas/interval.schema.json, in its order (a test holds them to it).
RECORD_FIELDS = ("v", "integration", "queue", "interval_start", "interval_minutes", "attribution", "revision",
                 "updated_at", "contacts", "offered", "handled", "unanswered", "handle_seconds_total", "aht_seconds",
                 "answer_seconds_total", "asa_seconds", "max_wait_seconds", "sla_seconds", "within_sla",
                 "service_level", "expired", "outcomes", "group_ids")
# Genesys Cloud WFM, "Prepare the historical data import .csv file": these columns, in this order.
GENESYS_COLUMNS = ("Interval Start UTC Date", "Queue", "Media Type", "Skill Set", "Language", "Offered",
                   "Interactions Handled", "Total Handle Time (Seconds)")
GENESYS_MINUTES = 15  # Genesys imports 15-minute rows only
# injixo's contact-events API (POST /external-systems/contact-events): its field names as columns.
INJIXO_COLUMNS = ("timestamp", "queueIdentifier", "queueName", "channel", "offered", "handled", "duration")

TIME_HELP = ("RFC 3339 with a zone (2024-05-06T09:00:00Z, 2024-05-06T11:00:00+02:00), or relative to now: "
             "now, 90m, now-2h, 1d, 1h30m")
FORMATS_EPILOG = """\
formats:
  table        for people: one line per interval, sorted by integration, queue and start;
               AHT, ASA and MAX WAIT as m:ss; SL % the share of handled contacts answered
               within the record's sla_seconds
  json         an array of the records as on the topic (UTC)
  csv          every field of the record, UTC: one outcome_<name> column per outcome
               present, group_ids separated by spaces; --tz adds interval_start_local
  genesys-csv  Genesys Cloud WFM's historical data import: Interval Start UTC Date, Queue,
               Media Type (chat), Skill Set and Language (empty), Offered, Interactions
               Handled, Total Handle Time (Seconds); 15-minute intervals only (30- and
               60-minute ones are refused, not split)
  injixo-csv   timestamp,queueIdentifier,queueName,channel,offered,handled,duration: the
               fields of injixo's contact-events API
The WFM files hold a row for every interval of the range that has begun, zeros where no
contact was counted, for every queue selected; handle time in whole seconds; always UTC.
"""


def add_parser(sub) -> None:
    """Register the `intervals` verb."""
    parser = sub.add_parser(
        "intervals", help="interval statistics per queue: a table, JSON, CSV, or a WFM import file",
        description="Read the intervals topic to its end, keep each interval's latest revision, and print\n"
                    "the intervals that start in [--since, --until), of every queue or those asked for.",
        epilog=FORMATS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--since", required=True, help=f"intervals starting at or after this: {TIME_HELP}")
    parser.add_argument("--until", help="intervals starting before this, written as --since (default: now)")
    parser.add_argument("--integration", help="only this integration's intervals")
    parser.add_argument("--queue", action="append", help="only this queue (the Freshchat group name, or "
                                                         "Undefined_Queue); repeatable")
    parser.add_argument("--format", choices=FORMATS, default="table", metavar="FORMAT",
                        help=f"{', '.join(FORMATS[:-1])} or {FORMATS[-1]} (default table; see below)")
    parser.add_argument("--tz", type=zone, metavar="ZONE",
                        help="label the table's intervals in this IANA time zone (Europe/Berlin), each with its "
                             "UTC offset, and add an interval_start_local column to csv; json and the WFM files "
                             "stay UTC (default: UTC)")


def zone(text: str) -> ZoneInfo:
    """An IANA time-zone name, as argparse's type for --tz."""
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "../x", "zone.tab", "Europe" (a directory)
        raise argparse.ArgumentTypeError(f"{text!r} is not a time zone: use an IANA name such as "
                                         "Europe/Berlin, America/New_York or UTC") from None


async def run(args, settings: Settings, out) -> int:
    """Check the range, read the topic, print the selection in the format asked for."""
    now = int(time.time()) * 1000  # one "now" for --since, --until and the zero rows
    since, until = time_window(args.since, args.until, now)
    if args.tz is not None and args.format in UTC_ONLY:
        print(f"freshstream: warning: --tz labels the table and csv only; --format {args.format} stays UTC",
              file=sys.stderr)
    await wait_for_broker(settings, timeout=min(10, settings.broker_wait_seconds))
    wanted = _Selection(since, until, args.integration, set(args.queue or ()))
    selected = await _read(settings, wanted)
    rows = sorted(selected.values(), key=lambda r: (r[1]["integration"], r[1]["queue"], r[0]))
    if args.format == "json":
        out(orjson.dumps([record for _, record in rows]).decode())
    elif args.format == "csv":
        out(_csv(_record_table(rows, args.tz)))
    elif args.format in ("genesys-csv", "injixo-csv"):
        out(_csv(_wfm_table(args.format, rows, since, min(until, now), settings)))
    elif rows:
        out(_table(rows, args.tz))
    else:
        print(f"intervals: {_nothing(settings, wanted)}", file=sys.stderr)
    return 0


class _Selection:
    """What was asked for, judged on a record's key; and what the topic held, for an empty answer."""

    def __init__(self, since: int, until: int, integration: str | None, queues: set[str]) -> None:
        self.since, self.until, self.integration, self.queues = since, until, integration, queues
        self.first: int | None = None
        self.last: int | None = None

    def start_of(self, record) -> int | None:
        """The interval start of a record if its key is selected, else None."""
        integration, queue, start_text = split_interval_key(record.key or b"")
        start = parse_time(start_text)
        if start is None or not integration or not queue:
            logger.warning("skipped %s[%d]@%d: its key %r is not <integration>/<queue>/<interval start>",
                           record.topic, record.partition, record.offset, record.key)
            return None
        self.first = start if self.first is None else min(self.first, start)
        self.last = start if self.last is None else max(self.last, start)
        if self.integration and integration != self.integration or self.queues and queue not in self.queues:
            return None
        return start if self.since <= start < self.until else None

    def described(self) -> str:
        parts = [f"{ms_to_short_time(self.since)} .. {ms_to_short_time(self.until)}"]
        if self.integration:
            parts.append(f"integration {self.integration}")
        if self.queues:
            parts.append(f"queue{'s' if len(self.queues) > 1 else ''} {', '.join(sorted(self.queues))}")
        return ", ".join(parts)


def _order(record: Mapping) -> tuple[int, str]:
    """Which of two revisions of an interval is the truth: the higher revision, then the later updated_at."""
    return record["revision"], record["updated_at"]


async def _read(settings: Settings, wanted: _Selection) -> dict[bytes, tuple[int, dict]]:
    """key -> (start ms, record) of the selected intervals, at their latest revision."""
    topic = settings.intervals_topic
    consumer = make_consumer(settings, fetch_max_wait_ms=200)
    await consumer.start()
    progress = Progress("intervals") if sys.stderr.isatty() else None
    try:
        await consumer.topics()
        numbers = consumer.partitions_for_topic(topic)
        if not numbers:
            raise missing_topic(settings, topic)
        partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
        consumer.assign(partitions)
        ends = await true_ends(consumer, partitions)  # moves the positions: seek back to the beginning
        await consumer.seek_to_beginning(*partitions)
        latest: dict[bytes, tuple[int, dict]] = {}
        pending = {tp for tp, end in ends.items() if end > 0}
        while pending:
            for records in (await consumer.getmany(*pending, timeout_ms=500)).values():
                for record in records:
                    _apply(latest, wanted, record)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
            if progress is not None:
                done = sum(ends[tp] if tp not in pending else min(await consumer.position(tp), ends[tp])
                           for tp in partitions)
                progress(f"topic {topic}", done, sum(ends.values()))
        return latest
    finally:
        if progress is not None:
            progress.close()
        await consumer.stop()


def _apply(latest: dict, wanted: _Selection, record) -> None:
    start = wanted.start_of(record)
    if start is None:
        return
    if record.value is None:  # a tombstone: the key is gone, as compaction would have it
        latest.pop(record.key, None)
        return
    try:
        value = orjson.loads(record.value)
        if not isinstance(value, dict) or value.get("v") != 1:
            raise ValueError("not a version 1 interval record")
        missing = [name for name in RECORD_FIELDS if name not in value]
        if missing:
            raise ValueError(f"no {', '.join(missing)}")
        if not isinstance(value["revision"], int) or not isinstance(value["updated_at"], str):
            raise ValueError("revision or updated_at of the wrong type")
        if value.get("interval_minutes") not in INTERVAL_MINUTES:
            raise ValueError(f"interval_minutes {value.get('interval_minutes')!r}")
    except (orjson.JSONDecodeError, ValueError) as exc:
        logger.warning("skipped %s[%d]@%d: not an interval record (%s)", record.topic, record.partition,
                       record.offset, exc)
        return
    known = latest.get(record.key)
    if known is None or _order(value) > _order(known[1]):
        latest[record.key] = (start, value)


def _nothing(settings: Settings, wanted: _Selection) -> str:
    """The one line an empty table is: what was asked, and what the topic holds, so a wrong date shows."""
    topic = settings.intervals_topic
    if wanted.first is None:
        held = (f"{topic} holds no interval yet (the worker writes them as contacts are counted, "
                f"unless {ENV_PREFIX}INTERVALS_ENABLED=false)")
    else:
        held = f"{topic} holds intervals starting {ms_to_short_time(wanted.first)} to {ms_to_short_time(wanted.last)}"
    return f"no interval starts in {wanted.described()}; {held}"


# --- table ---------------------------------------------------------------------------------------

TABLE_COLUMNS = ("INTERVAL", "INTEGRATION", "QUEUE", "OFFERED", "HANDLED", "UNANSWERED", "AHT", "ASA", "MAX WAIT",
                 "SL %", "EXPIRED")
_TEXT_COLUMNS = 3  # the rest are figures, aligned right


def _table(rows: list[tuple[int, dict]], tz: ZoneInfo | None) -> str:
    lines = [TABLE_COLUMNS]
    for start, r in rows:
        level = r.get("service_level")
        lines.append((ms_to_zone_label(start, tz), r["integration"], r["queue"], str(r["offered"]),
                      str(r["handled"]), str(r["unanswered"]), _clock(r.get("aht_seconds")),
                      _clock(r.get("asa_seconds")), _clock(r.get("max_wait_seconds")),
                      "-" if level is None else f"{level * 100:.1f}", str(r["expired"])))
    widths = [max(len(line[i]) for line in lines) for i in range(len(TABLE_COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) if i < _TEXT_COLUMNS else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(line, widths))).rstrip() for line in lines)


def _clock(seconds: float | None) -> str:
    """m:ss, or h:mm:ss from an hour; "-" where there is no figure (no handled contact)."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


# --- csv -----------------------------------------------------------------------------------------

def _csv(table: list[list]) -> str:
    """RFC 4180 cells (quoted where needed), lines ending in LF; the last line's LF is print's."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(table)
    return buffer.getvalue()[:-1]


def _record_table(rows: list[tuple[int, dict]], tz: ZoneInfo | None) -> list[list]:
    outcomes = sorted({name for _, r in rows for name in r.get("outcomes") or {}})
    header: list[str] = []
    for name in RECORD_FIELDS:
        if name == "outcomes":
            header += [f"outcome_{o}" for o in outcomes]
            continue
        header.append(name)
        if name == "interval_start" and tz is not None:
            header.append("interval_start_local")
    table: list[list] = [header]
    for start, r in rows:
        line: list = []
        for name in RECORD_FIELDS:
            if name == "outcomes":
                line += [(r.get("outcomes") or {}).get(o, 0) for o in outcomes]
                continue
            value = r.get(name)
            line.append(" ".join(value) if isinstance(value, list) else "" if value is None else value)
            if name == "interval_start" and tz is not None:
                line.append(ms_to_zone_time(start, tz))
        table.append(line)
    return table


# --- the WFM files -------------------------------------------------------------------------------

def _wfm_table(fmt: str, rows: list[tuple[int, dict]], since: int, stop: int, settings: Settings) -> list[list]:
    """Genesys or injixo rows: every selected queue, every interval in [since, stop), zeros where none."""
    minutes = _interval_minutes(fmt, rows, settings)
    by_queue: dict[tuple[str, str], dict[int, dict]] = {}
    for start, r in rows:
        by_queue.setdefault((r["integration"], r["queue"]), {})[start] = r
    _one_integration_per_queue(fmt, by_queue)
    length = minutes * 60_000
    grid = range(since + (-since % length), stop, length)
    genesys = fmt == "genesys-csv"
    table: list[list] = [list(GENESYS_COLUMNS if genesys else INJIXO_COLUMNS)]
    for (integration, queue), found in sorted(by_queue.items()):
        identifier = None if genesys else _queue_identifier(queue, found.values())
        for start in sorted(set(grid) | set(found)):
            r = found.get(start)
            offered, handled = (r["offered"], r["handled"]) if r else (0, 0)
            handle = round(r["handle_seconds_total"]) if r else 0
            at = ms_to_short_time(start)
            table.append([at, queue, "chat", "", "", offered, handled, handle] if genesys
                         else [at, identifier, queue, "chats", offered, handled, handle])
    return table


def _interval_minutes(fmt: str, rows: list[tuple[int, dict]], settings: Settings) -> int:
    lengths = sorted({r["interval_minutes"] for _, r in rows}) or [settings.interval_minutes]
    if len(lengths) > 1:
        raise UsageError(f"--format {fmt}: the selected intervals are of {' and '.join(map(str, lengths))} "
                         f"minutes ({ENV_PREFIX}INTERVAL_MINUTES changed within the range), and a WFM file has "
                         "one length: narrow --since and --until to one of them")
    if fmt == "genesys-csv" and lengths[0] != GENESYS_MINUTES:
        raise UsageError(f"--format genesys-csv: Genesys Cloud imports 15-minute intervals only, and these are "
                         f"{lengths[0]}-minute ones; splitting them would invent figures, so nothing is written "
                         f"(run the worker with {ENV_PREFIX}INTERVAL_MINUTES=15 for intervals Genesys can import)")
    return lengths[0]


def _one_integration_per_queue(fmt: str, by_queue: Mapping[tuple[str, str], dict]) -> None:
    """A WFM row names its queue, not the integration: two integrations' same-named queues would merge."""
    seen: dict[str, str] = {}
    for integration, queue in sorted(by_queue):
        if queue in seen:
            raise UsageError(f"--format {fmt}: queue {queue!r} is in integrations {seen[queue]} and {integration}, "
                             "and a WFM row names the queue alone: add --integration")
        seen[queue] = integration


def _queue_identifier(queue: str, records: Iterable[Mapping]) -> str:
    """injixo's queueIdentifier, stable across rows: the queue's Freshchat group id when its records
    name exactly one, Undefined_Queue for that queue, otherwise the queue name."""
    if queue == UNDEFINED_QUEUE:
        return UNDEFINED_QUEUE
    groups = {group for r in records for group in r.get("group_ids") or ()}
    return groups.pop() if len(groups) == 1 else queue
