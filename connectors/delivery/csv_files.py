"""`freshstream deliver csv`: contact and interval rows as CSV files a WFM's file import picks up.

The directory is the sink's whole state. A file is replaced whole and atomically (a temp file
beside it, fsync, rename), so an import never reads half of one; the consumer group's offsets
move only past records whose files are on disk, so a sink stopped anywhere, even by SIGKILL,
reads the rest again and folds it into the files it finds, which hold each row's revision.
What goes in which file is streams/domain/csv_files.py; docs/delivery.md says it for users.
"""

from __future__ import annotations

import asyncio
import csv
import fcntl
import io
import logging
import os
import sys
import time
from pathlib import Path

import orjson
from aiokafka import TopicPartition
from prometheus_client import Counter, Gauge

from connectors.cli.signals import until_signal_or
from connectors.delivery.web import SinkWeb
from connectors.integrations.records import NAME_PATTERN
from connectors.kafka.clients import make_consumer
from connectors.kafka.topics import missing_topic, true_ends, wait_for_broker
from streams.domain.csv_files import (CONTACT_COLUMNS, INTERVAL_COLUMNS, FileKey, RowFiles, contact_change,
                                      interval_change)
from streams.domain.times import ms_to_file_stamp, parse_file_stamp
from streams.errors import UsageError, os_reason
from streams.metrics import CallbackGauge, MetricSet
from streams.settings import Settings

__all__ = ["run_csv", "CsvSink", "LOCK_NAME", "LAYOUT_NAME", "KINDS"]

logger = logging.getLogger(__name__)

LOCK_NAME = ".freshstream-csv.lock"  # held with flock while a sink writes the directory
LAYOUT_NAME = ".freshstream-csv.json"  # the --rotate and attribution the files were cut by
KINDS = {"contacts": CONTACT_COLUMNS, "intervals": INTERVAL_COLUMNS}


async def run_csv(args, settings: Settings, rotate: int) -> int:
    """Take the directory, serve the probes, and write files of `rotate` minutes until a signal."""
    directory = Path(args.dir)
    lock = take_directory(directory, args.rotate, rotate, settings.interval_attribution)
    try:
        sink = CsvSink(settings, directory, rotate)
        web = SinkWeb("csv", args.web_port, sink.metrics, sink.readiness)
        await web.start()
        try:
            print(f"freshstream deliver csv running, writing {directory}; Ctrl-C stops it", file=sys.stderr)
            return await until_signal_or(sink.run())
        finally:
            await web.stop()
    finally:
        lock.close()


def take_directory(directory: Path, rotate_text: str, rotate: int, attribution: str):
    """Create the directory, lock it for this sink alone, and check it was cut the same way.

    Two sinks on one directory would each write whole files from half the knowledge; files cut
    by another --rotate or attribution would be read back into the wrong periods.
    """
    lock_path = directory / LOCK_NAME
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock = open(lock_path, "a+b")
    except OSError as exc:
        raise UsageError(f"--dir {directory}: cannot write there ({os_reason(exc)}): give a directory this "
                         "user can create files in, or fix its permissions") from None
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise UsageError(f"--dir {directory} is being written by another 'freshstream deliver csv' (it holds "
                         f"{lock_path}): stop that one, or give this one another --dir") from None
    layout = {"rotate_minutes": rotate, "attribution": attribution}
    layout_path = directory / LAYOUT_NAME
    try:
        found = orjson.loads(layout_path.read_bytes()) if layout_path.exists() else None
        if found is None:
            _write_atomically(layout_path, orjson.dumps(layout) + b"\n")
    except (OSError, orjson.JSONDecodeError) as exc:
        lock.close()
        reason = os_reason(exc) if isinstance(exc, OSError) else "not JSON"
        raise UsageError(f"--dir {directory}: cannot use {layout_path} ({reason}): fix or remove it") from None
    if found is not None and found != layout:
        lock.close()
        raise UsageError(f"--dir {directory} holds files of {found.get('rotate_minutes')}-minute periods "
                         f"attributed by {found.get('attribution')}, not --rotate {rotate_text} by {attribution}: "
                         "the rows would be read back into the wrong files; use a new --dir")
    return lock


class CsvMetrics(MetricSet):
    """What the sink wrote, what it skipped, and what waits to be written."""

    def __init__(self, pending) -> None:
        super().__init__()
        registry = self.registry
        self.files = Counter("freshstream_csv_files_written_total", "CSV files written (first and again), by kind.",
                             ["kind"], registry=registry)
        self.rows = Counter("freshstream_csv_rows_written_total", "Rows in the CSV files written, by kind.",
                            ["kind"], registry=registry)
        self.last_write = Gauge("freshstream_csv_last_write_timestamp_seconds",
                                "When the sink last replaced a file (Unix time).", registry=registry)
        self.records = Counter("freshstream_csv_records_total",
                               "Records read, by kind and verdict: applied, stale (not newer than a file holds), "
                               "skipped.", ["kind", "verdict"], registry=registry)
        self.write_errors = Counter("freshstream_csv_write_errors_total", "Files that could not be written.",
                                    registry=registry)
        self.add(CallbackGauge("freshstream_csv_pending_files", "Files changed and not yet written, by kind.",
                               pending))


class CsvSink:
    """Reads every partition of the contacts and intervals topics and keeps the files true."""

    def __init__(self, settings: Settings, directory: Path, rotate_minutes: int) -> None:
        self.settings, self.directory, self.rotate = settings, directory, rotate_minutes
        self.files = {kind: RowFiles(kind, rotate_minutes, self._loader(kind)) for kind in KINDS}
        self.metrics = CsvMetrics(lambda: [({"kind": kind}, len(files.pending)) for kind, files in self.files.items()])
        self._ready, self._reason = False, "starting"
        self._committed: dict[TopicPartition, int] = {}

    def readiness(self) -> tuple[bool, str]:
        return self._ready, self._reason

    # --- the files ---------------------------------------------------------------------------

    def path(self, kind: str, file: FileKey) -> Path:
        integration, start = file
        return self.directory / integration / kind / f"{ms_to_file_stamp(start)}.csv"

    def _loader(self, kind: str):
        def load(file: FileKey) -> list[list[str]]:
            return self._read(kind, self.path(kind, file))
        return load

    def _read(self, kind: str, path: Path) -> list[list[str]]:
        try:
            with open(path, newline="", encoding="utf-8") as handle:
                rows = list(csv.reader(handle))
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            reason = os_reason(exc) if isinstance(exc, OSError) else str(exc)
            raise UsageError(f"cannot read {path} back ({reason}): fix its permissions, or move it out of "
                             f"--dir {self.directory} (its rows are then written again as records arrive)") from None
        columns = list(KINDS[kind])
        if not rows or rows[0] != columns or any(len(row) != len(columns) for row in rows[1:]):
            raise UsageError(f"{path} is not a file of freshstream's {kind} columns (edited, or written by another "
                             f"version): move it out of --dir {self.directory}")
        return rows[1:]

    def scan(self) -> int:
        """Seed the fold from the files on disk, and remove the temp files a stop left behind."""
        now, found = time.monotonic(), 0
        for integration in sorted(p for p in self.directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for kind in KINDS:
                folder = integration / kind
                if not folder.is_dir():
                    continue
                for path in sorted(folder.iterdir()):
                    if path.name.startswith(".") and path.name.endswith(".tmp"):
                        path.unlink(missing_ok=True)
                        continue
                    start = parse_file_stamp(path.name.removesuffix(".csv")) if path.suffix == ".csv" else None
                    if start is not None:
                        self.files[kind].seed((integration.name, start), self._read(kind, path), now)
                        found += 1
        return found

    def flush(self, now_ms: int, now: float, settle: float) -> None:
        """Write every due file; one that fails stays pending (and holds its offsets back) for the next try."""
        failed = None
        for kind, files in self.files.items():
            for file in files.due(now_ms, now, settle):
                path = self.path(kind, file)
                rows = files.content(file)
                try:
                    _write_csv(path, KINDS[kind], rows)
                except OSError as exc:
                    self.metrics.write_errors.inc()
                    failed = f"cannot write {path} ({os_reason(exc)})"
                    logger.error("deliver csv: %s: free space or fix the permissions of --dir %s; retrying",
                                 failed, self.directory)
                    continue
                files.written(file)
                self.metrics.files.labels(kind).inc()
                self.metrics.rows.labels(kind).inc(len(rows))
                self.metrics.last_write.set(time.time())
                logger.info("deliver csv: wrote %s (%d rows)", path, len(rows))
        if failed is not None:
            self._reason = failed
        elif self._ready:
            self._reason = "writing files"

    # --- the topics --------------------------------------------------------------------------

    def apply(self, kind: str, record, now: float) -> None:
        """Fold one record into the files it changes; anything unreadable is counted and skipped."""
        change = self._change(kind, record)
        if change is None:
            self.metrics.records.labels(kind, "skipped").inc()
            return
        source = (TopicPartition(record.topic, record.partition), record.offset)
        applied = self.files[kind].put(*change, now, source)
        self.metrics.records.labels(kind, "applied" if applied else "stale").inc()

    def _change(self, kind: str, record):
        if record.value is None:  # a compaction tombstone: the worker writes none, and a WFM has no use for one
            return None
        try:
            value = orjson.loads(record.value)
            if not isinstance(value, dict) or not NAME_PATTERN.fullmatch(str(value.get("integration"))):
                raise ValueError("no integration name")
            if not isinstance(value.get("revision", 1), int) or not isinstance(value.get("queue"), str):
                raise ValueError("no revision or queue")
            if kind == "contacts":
                if not isinstance(value.get("contact_id"), str):
                    raise ValueError("no contact_id")
                change = contact_change(value, self.rotate, self.settings.interval_attribution)
            else:
                if not isinstance(value.get("updated_at"), str) or "revision" not in value:
                    raise ValueError("no revision or updated_at")
                change = interval_change(value, self.rotate)
            if change is None:
                raise ValueError("no time to place it by")
        except (orjson.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
            logger.warning("deliver csv: skipped %s[%d]@%d: not a %s record (%s)", record.topic, record.partition,
                           record.offset, kind[:-1], exc)
            return None
        return change

    async def run(self) -> int:
        """Fold the topics into the files from the group's committed offsets, for good."""
        settings = self.settings
        await wait_for_broker(settings, timeout=settings.broker_wait_seconds)
        found = await asyncio.to_thread(self.scan)
        logger.info("deliver csv: %d files found in %s", found, self.directory)
        consumer = make_consumer(settings, group_id=f"{settings.delivery_app_id}-csv", fetch_max_wait_ms=200)
        await consumer.start()
        try:
            await consumer.topics()
            kinds = {settings.contacts_topic: "contacts", settings.intervals_topic: "intervals"}
            contacts = consumer.partitions_for_topic(settings.contacts_topic)
            if not contacts:
                raise missing_topic(settings, settings.contacts_topic)
            partitions = [TopicPartition(settings.contacts_topic, p) for p in sorted(contacts)]
            intervals = consumer.partitions_for_topic(settings.intervals_topic)
            if intervals:
                partitions += [TopicPartition(settings.intervals_topic, p) for p in sorted(intervals)]
            else:
                logger.warning("deliver csv: topic %s does not exist; writing contact files only",
                               settings.intervals_topic)
            consumer.assign(partitions)
            ends = await true_ends(consumer, partitions)  # moves the positions: seek to the committed ones after
            for tp in partitions:
                committed = await consumer.committed(tp)
                if committed is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, committed)
                    self._committed[tp] = committed
            self._reason = "reading the topics to their ends"
            settle = settings.delivery_settle_seconds
            while True:
                batches = await consumer.getmany(timeout_ms=200)
                now = time.monotonic()
                for tp, records in batches.items():
                    for record in records:
                        self.apply(kinds[tp.topic], record, now)
                if not self._ready and all([await consumer.position(tp) >= end for tp, end in ends.items()]):
                    self._ready, self._reason = True, "writing files"
                    logger.info("deliver csv: read the topics to their ends")
                await asyncio.to_thread(self.flush, int(time.time() * 1000), time.monotonic(), settle)
                await self._commit(consumer, partitions)
        finally:
            await consumer.stop()

    async def _commit(self, consumer, partitions) -> None:
        """Commit, per partition, up to the first record whose change is not on disk yet."""
        held: dict = {}
        for files in self.files.values():
            for tp, offset in files.holds().items():
                held[tp] = min(offset, held.get(tp, offset))
        offsets = {}
        for tp in partitions:
            offset = min(await consumer.position(tp), held.get(tp, sys.maxsize))
            if offset != self._committed.get(tp):
                offsets[tp] = offset
        if offsets:
            await consumer.commit(offsets)
            self._committed.update(offsets)


def _write_csv(path: Path, columns, rows) -> None:
    """Header and rows, RFC 4180 (CRLF, quoted where needed), replacing the file in one rename."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(columns)
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, buffer.getvalue().encode("utf-8"))


def _write_atomically(path: Path, data: bytes) -> None:
    """Write beside the file under a name no `*.csv` pattern matches, fsync, rename over it, fsync the
    directory: a reader sees the old file or the new one, never part of one, even after a power cut."""
    temp = path.with_name(f".{path.name}.tmp")
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
