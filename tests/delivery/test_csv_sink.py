"""`freshstream deliver csv` end to end: a real broker, the sink as a process, the files parsed back.

The expectation is computed apart from the sink: the final contacts (final_revisions, retracted
ones left out) grouped by integration and the period their started_at falls in.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from connectors.kafka.topics import ensure_topics
from streams.domain.contact import final_revisions
from streams.domain.csv_files import CONTACT_COLUMNS, INTERVAL_COLUMNS
from streams.domain.times import ms_to_file_stamp, parse_time
from tests.contact_records import contact, key, retraction
from tests.interval_records import interval, interval_key
from tests.kafka_records import wait_until
from tests.processes import CsvSinkProcess, settings_env

PREFIX = "freshstream: error: "


def at(minute: int, base: str = "2024-05-06T09:00:00.000Z") -> str:
    """A time `minute` minutes after 09:00 on the test day, as the worker writes times."""
    from streams.domain.times import ms_to_time
    return ms_to_time(parse_time(base) + minute * 60_000)


def started(conversation: str, revision: int, queue: str, minute: int, **fields) -> dict:
    """A live contact whose cycle started `minute` minutes after 09:00."""
    return {**contact(conversation, revision, queue, at(minute + 10), **fields), "started_at": at(minute)}


@pytest.fixture
def topics(settings, loop_thread):
    loop_thread.run(ensure_topics(settings))
    return settings


@pytest.fixture
def send(topics, loop_thread):
    """Write contact records (and interval records, intervals=True) in order, acknowledged."""
    async def produce(records, topic, key_of):
        producer = AIOKafkaProducer(bootstrap_servers=topics.bootstrap, acks="all")
        await producer.start()
        try:
            for record in records:
                await producer.send_and_wait(topic, orjson.dumps(record), key=key_of(record))
        finally:
            await producer.stop()

    def write(records, intervals: bool = False):
        topic = topics.intervals_topic if intervals else topics.contacts_topic
        loop_thread.run(produce(records, topic, interval_key if intervals else key))
    return write


def expected_contacts(records, rotate: int = 15) -> dict[str, dict[str, dict]]:
    """<integration>/contacts/<stamp>.csv -> {contact_id: the final contact} of the live ones."""
    out: dict = {}
    for c in final_revisions(records).values():
        if not c["retracted"]:
            start = parse_time(c["started_at"])
            name = f"{c['integration']}/contacts/{ms_to_file_stamp(start - start % (rotate * 60_000))}.csv"
            out.setdefault(name, {})[c["contact_id"]] = c
    return out


def read_dir(directory: Path) -> dict[str, list[dict]]:
    """Every file under the directory but the sink's own (dot files), parsed; rows as dicts."""
    found = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            with open(path, newline="", encoding="utf-8") as handle:
                rows = list(csv.reader(handle))
            header = tuple(rows[0])
            assert header in (CONTACT_COLUMNS, INTERVAL_COLUMNS), f"{path}: header {header}"
            found[path.relative_to(directory).as_posix()] = [dict(zip(header, row)) for row in rows[1:]]
    return found


def contact_files(directory: Path) -> dict[str, dict[str, tuple]]:
    """The contact files, non-empty ones, as {contact_id: (revision, queue, started_at, agent_id)}."""
    return {name: {r["contact_id"]: (int(r["revision"]), r["queue"], r["started_at"], r["agent_id"]) for r in rows}
            for name, rows in read_dir(directory).items() if "/contacts/" in name and rows}


def summary(expected: dict) -> dict[str, dict[str, tuple]]:
    return {name: {cid: (c["revision"], c["queue"], c["started_at"], c["agent_id"]) for cid, c in rows.items()}
            for name, rows in expected.items()}


def no_temp_files(directory: Path) -> list[str]:
    return [p.name for p in directory.rglob("*.tmp")]


def history() -> list[dict]:
    """Revisions, a retraction, a move between queues, a start revised into an earlier interval, two integrations."""
    return [
        started("c1", 1, "Sales", 0), started("c1", 2, "Sales", 0, agent_id="a-2"),
        started("c2", 1, "Support", 20), retraction("c2", 2, "Support"),
        started("c3", 1, "Sales", 5), retraction("c3", 2, "Sales"), started("c3", 3, "Support", 5),
        started("c6", 1, "Sales", 40), started("c6", 2, "Sales", 25),
        started("c4", 1, "Support", 50), started("c5", 1, "Sales", 10, integration="beta"),
    ]


def test_files_hold_the_final_contacts_and_the_latest_intervals(settings, send, tmp_path):
    records = history()
    send(records)
    intervals = [interval("acme", "Sales", at(0), 1), interval("acme", "Sales", at(0), 2, contacts=2),
                 interval("acme", "Sales", at(15), 1), interval("acme", "Support", at(30), 1)]
    send(intervals, intervals=True)
    out = tmp_path / "out"
    sink = CsvSinkProcess(settings, tmp_path, out, "--rotate", "30m", "--settle", "0").start()
    try:
        want = summary(expected_contacts(records, rotate=30))
        assert set(want) == {"acme/contacts/2024-05-06T0900Z.csv", "acme/contacts/2024-05-06T0930Z.csv",
                             "beta/contacts/2024-05-06T0900Z.csv"}
        wait_until(lambda: contact_files(out) == want and len(read_dir(out)) == 5, timeout=20,
                   what=f"the contact files {want} (log {sink.log_path})")
        files = read_dir(out)
        assert {r["contact_id"]: r["queue"] for r in files["acme/contacts/2024-05-06T0900Z.csv"]} == {
            "acme:c1:1": "Sales", "acme:c3:1": "Support", "acme:c6:1": "Sales"}  # c6 moved here from 09:30
        sales = [(r["queue"], r["interval_start"], r["revision"], r["contacts"], r["queue_identifier"])
                 for r in files["acme/intervals/2024-05-06T0900Z.csv"]]
        assert sales == [("Sales", at(0), "2", "2", "g-sales"), ("Sales", at(15), "1", "1", "g-sales")]
        assert [r["queue"] for r in files["acme/intervals/2024-05-06T0930Z.csv"]] == ["Support"]
        assert no_temp_files(out) == []
        assert _files_written(sink) >= 3
    finally:
        assert sink.stop() == 0
    again = CsvSinkProcess(settings, tmp_path, out, "--rotate", "30m", "--settle", "0", name="again").start()
    try:  # the offsets were committed once the files were written: nothing is read or written again
        assert _records_read(again) == 0 and read_dir(out) == files
    finally:
        assert again.stop() == 0


def test_a_late_revision_rewrites_the_file_it_changes(settings, send, tmp_path):
    send([started("c1", 1, "Sales", 0), started("c2", 1, "Sales", 3)])
    out = tmp_path / "out"
    sink = CsvSinkProcess(settings, tmp_path, out, "--settle", "0.2").start()
    name = "acme/contacts/2024-05-06T0900Z.csv"
    try:
        wait_until(lambda: contact_files(out).get(name, {}).keys() == {"acme:c1:1", "acme:c2:1"}, timeout=20,
                   what="the first file")
        send([started("c1", 2, "Support", 0, agent_id="a-9"), retraction("c2", 2, "Sales")])
        wait_until(lambda: contact_files(out).get(name) == {"acme:c1:1": (2, "Support", at(0), "a-9")}, timeout=20,
                   what=f"the file written again with the revision and without the retracted contact ({sink.log_path})")
        assert no_temp_files(out) == []
    finally:
        sink.stop()


def test_a_sink_killed_mid_run_ends_at_the_same_files(settings, send, tmp_path):
    first = [started(f"k{i}", 1, ("Sales", "Support")[i % 2], i % 60) for i in range(60)]
    second = ([record for i in range(0, 60, 2)  # a move to Support, with its cycle's start revised
               for record in (retraction(f"k{i}", 2, "Sales"), started(f"k{i}", 3, "Support", (i * 7) % 60))]
              + [retraction(f"k{i}", 2, "Support") for i in range(1, 60, 6)]
              + [started(f"k{i}", 3, "Sales", 59 - i) for i in range(1, 60, 12)])  # back after a retraction
    out = tmp_path / "out"
    send(first)
    sink = CsvSinkProcess(settings, tmp_path, out, "--settle", "0.3").start()
    wait_until(lambda: contact_files(out), timeout=20, what="some files written")
    written = _files_written(sink)
    send(second)
    wait_until(lambda: _files_written(sink) > written, timeout=20, what="a file of the second batch written")
    sink.kill()  # mid-run: some files of the second batch written, others pending, offsets held back
    records = first + second
    want = summary(expected_contacts(records))
    again = CsvSinkProcess(settings, tmp_path, out, "--settle", "0.3", name="deliver-csv-again").start()
    try:
        wait_until(lambda: contact_files(out) == want, timeout=30,
                   what=f"the final files after the restart (log {again.log_path})")
        assert no_temp_files(out) == []
        ids = [r["contact_id"] for name, rows in read_dir(out).items() for r in rows]
        assert len(ids) == len(set(ids))  # nothing doubled
    finally:
        again.stop()


def _files_written(sink: CsvSinkProcess) -> float:
    lines = [line for line in sink.metrics().splitlines()
             if line.startswith('freshstream_csv_files_written_total{kind="contacts"}')]
    return float(lines[0].split()[-1]) if lines else 0.0


def _records_read(sink: CsvSinkProcess) -> float:
    return sum(float(line.split()[-1]) for line in sink.metrics().splitlines()
               if line.startswith("freshstream_csv_records_total{"))


def _refusal(args: list[str], settings) -> subprocess.CompletedProcess:
    env = settings_env(settings.replace(log_level="", library_log_level="WARNING"))
    return subprocess.run([sys.executable, "-m", "connectors.cli", "deliver", "csv", *args], env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def _one_error_line(done: subprocess.CompletedProcess, expected: str) -> None:
    lines = done.stderr.splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith(PREFIX) and expected in lines[0] and "Traceback" not in done.stderr


def test_a_second_sink_on_the_directory_is_refused(settings, topics, tmp_path):
    out = tmp_path / "out"
    sink = CsvSinkProcess(settings, tmp_path, out, "--settle", "0").start()
    try:
        done = _refusal(["--dir", str(out)], settings)
        _one_error_line(done, f"--dir {out} is being written by another 'freshstream deliver csv'")
        assert sink.ready()  # the first one goes on
    finally:
        sink.stop()


def test_an_unwritable_directory_is_one_error_line(settings, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    done = _refusal(["--dir", str(blocker / "out")], settings)
    _one_error_line(done, f"--dir {blocker / 'out'}: cannot write there")


def test_a_directory_cut_by_another_rotation_is_refused(settings, topics, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".freshstream-csv.json").write_bytes(orjson.dumps({"rotate_minutes": 60, "attribution": "started"}))
    done = _refusal(["--dir", str(out), "--rotate", "15m"], settings)
    _one_error_line(done, "holds files of 60-minute periods")
