"""`freshstream intervals` against the embedded broker: interval records, several revisions of a key
arriving out of order, written with a plain producer once for the module, then read back in every
format. The verb runs in-process for the figures and as a real process for what a terminal shows."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from connectors.cli import intervals
from connectors.cli.main import build_parser, main
from connectors.kafka.topics import ensure_topic
from streams.domain.interval_figures import Member
from streams.domain.intervals import IntervalState, build_interval
from streams.domain.keys import interval_key
from streams.domain.times import ms_to_short_time, ms_to_time, parse_time
from streams.errors import UsageError
from tests.conftest import CAPTURE, test_settings
from tests.processes import settings_env
from tests.schemas import assert_valid

pytestmark = pytest.mark.integration

PARTITIONS = 3  # partition 2 stays empty: a reader must not wait for records there
PARTITION = {("acme", "Sales"): 0, ("acme", "Undefined_Queue"): 0, ("acme", "Support"): 1, ("beta", "Sales"): 1,
             ("acme", "Night"): 1, ("live", "Now"): 0}
GENESYS_HEADER = ["Interval Start UTC Date", "Queue", "Media Type", "Skill Set", "Language", "Offered",
                  "Interactions Handled", "Total Handle Time (Seconds)"]
INJIXO_HEADER = ["timestamp", "queueIdentifier", "queueName", "channel", "offered", "handled", "duration"]
GENESYS_START = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:(00|15|30|45):00(\.000)?Z$")
DAY = "2024-05-06T"
PREFIX = "freshstream: error: "


def interval(queue: str, start: str, revision: int, *, integration: str = "acme", offered: int = 1,
             handled: int = 1, handle_s: float = 100.0, wait_s: float = 10.0, groups: tuple[str, ...] = ("g-sales",),
             updated: str = "2024-05-07T00:00:00.000Z", minutes: int = 15) -> dict:
    """A record as the worker writes it: `offered` contacts, the first `handled` of them answered."""
    members = {f"{integration}:{queue}:{start}:{i}":
               Member(True, i < handled, round(handle_s * 1000), round(wait_s * 1000) if i < handled else None,
                      "resolved" if i < handled else "expired", groups[i % len(groups)]).dump()
               for i in range(offered)}
    record = build_interval(integration, queue, parse_time(start), minutes, "started",
                            IntervalState(revision=revision, members=members), 60_000,
                            parse_time(updated) + revision)
    assert_valid("interval", record)
    return record


def later(record: dict, ms: int) -> dict:
    """The same record written `ms` later (a recovered worker's re-emission)."""
    return {**record, "updated_at": ms_to_time(parse_time(record["updated_at"]) + ms)}


SALES_0900 = [interval("Sales", DAY + "09:00:00.000Z", r, offered=r, handled=1) for r in (1, 2, 3)]
SALES_0915_EARLY = interval("Sales", DAY + "09:15:00.000Z", 1, offered=2, handled=2, handle_s=90)
SALES_0915_LATE = later(interval("Sales", DAY + "09:15:00.000Z", 1, offered=2, handled=1, handle_s=80), 5000)
SALES_1000 = interval("Sales", DAY + "10:00:00.000Z", 1, offered=4, handled=3, handle_s=61.6, wait_s=75)
SUPPORT_0930 = interval("Support", DAY + "09:30:00.000Z", 2, offered=2, handled=2, groups=("g-sup-1", "g-sup-2"))
SUPPORT_1015 = interval("Support", DAY + "10:15:00.000Z", 1, offered=1, handled=0, handle_s=30,
                        groups=("g-sup-1",))  # nobody answered: no AHT, ASA or service level
UNDEFINED_0915 = interval("Undefined_Queue", DAY + "09:15:00.000Z", 1, groups=("g-unknown",))
BETA_SALES_0900 = interval("Sales", DAY + "09:00:00.000Z", 1, integration="beta", groups=("g-beta",))
BEFORE = interval("Sales", "2024-05-05T23:45:00.000Z", 1)
AFTER = interval("Sales", DAY + "12:00:00.000Z", 1)
# Europe/Berlin leaves summer time at 01:00 UTC on 2024-10-27: 02:00-02:59 local happens twice.
NIGHT = [interval("Night", start, 1, groups=("g-night",)) for start in ["2024-10-26T23:45:00.000Z"] + [
    f"2024-10-27T{h}:{m}:00.000Z" for h in ("00", "01") for m in ("00", "15", "30", "45")]]
NOW_MS = int(time.time() * 1000)
CURRENT = NOW_MS - NOW_MS % 900_000
LIVE = interval("Now", ms_to_time(CURRENT - 900_000), 1, integration="live", groups=("g-now",))

WRITTEN = [*SALES_0900, SALES_0915_LATE, SALES_0915_EARLY, SALES_0900[1],  # a lower revision last; a tie
           SALES_1000, SUPPORT_0930, SUPPORT_1015, UNDEFINED_0915, BETA_SALES_0900, BEFORE, AFTER, *NIGHT, LIVE]
FINAL_ACME = [SALES_0900[2], SALES_0915_LATE, SALES_1000, SUPPORT_0930, SUPPORT_1015, UNDEFINED_0915]  # 09:00-10:30


async def produce(settings, topic: str, records: list[dict]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all")
    await producer.start()
    try:
        for r in records:
            await producer.send_and_wait(topic, orjson.dumps(r),
                                         key=interval_key(r["integration"], r["queue"], r["interval_start"]),
                                         partition=PARTITION[(r["integration"], r["queue"])])
    finally:
        await producer.stop()


async def produce_raw(settings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key, partition=0)
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
def topics(broker, loop_thread, tmp_path_factory):
    """Settings whose intervals topic holds WRITTEN; and settings for a topic of 30-minute intervals."""
    suffix = uuid.uuid4().hex[:8]
    settings = test_settings(tmp_path_factory.mktemp("intervals"), broker.port, intervals_topic=f"intervals-{suffix}",
                             log_level="WARNING")
    half_hours = settings.replace(intervals_topic=f"intervals-30-{suffix}")
    for each in (settings, half_hours):
        loop_thread.run(ensure_topic(each, each.intervals_topic, PARTITIONS))
    loop_thread.run(produce(settings, settings.intervals_topic, WRITTEN))
    loop_thread.run(produce_raw(settings, settings.intervals_topic, [  # skipped with a warning, not a crash
        (interval_key("acme", "Sales", DAY + "09:45:00.000Z"), b"not json"),
        (interval_key("acme", "Sales", DAY + "09:30:00.000Z"), orjson.dumps({"v": 1, "revision": 9})),
        (b"no-slash", orjson.dumps(SALES_1000))]))
    loop_thread.run(produce(half_hours, half_hours.intervals_topic,
                            [interval("Sales", DAY + "09:00:00.000Z", 1, minutes=30)]))
    return settings, half_hours


@pytest.fixture
def verb(topics, loop_thread):
    """Run `freshstream intervals ARGS` in-process on the module's topic; returns its stdout text."""
    def run(*argv: str, settings=None) -> str:
        args = build_parser().parse_args(["intervals", *argv])
        printed: list[str] = []
        assert loop_thread.run(intervals.run(args, settings or topics[0], printed.append), timeout=60) == 0
        return "\n".join(printed)
    return run


def selection(records: list[dict]) -> list[tuple[str, str, str]]:
    return [(r["integration"], r["queue"], r["interval_start"]) for r in records]


def window(start: str = "09:00", end: str = "10:30") -> list[str]:
    return ["--since", f"{DAY}{start}:00Z", "--until", f"{DAY}{end}:00Z"]


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_the_latest_revision_of_each_interval_wins_and_json_is_the_records_as_written(verb):
    seen = len(CAPTURE.lines)
    got = orjson.loads(verb(*window(), "--integration", "acme", "--format", "json"))
    assert got == FINAL_ACME, "revision 3 and, of two revision 1s, the later updated_at must win"
    skipped = [line for line in CAPTURE.lines[seen:] if "connectors.cli.intervals: skipped" in line]
    reasons = [line.split(": ", 2)[2] for line in skipped]
    assert reasons[0].startswith("not an interval record (") and reasons[1:] == [  # not JSON; then
        "not an interval record (no integration, queue, interval_start, interval_minutes, attribution, updated_at, "
        "contacts, offered, handled, unanswered, handle_seconds_total, aht_seconds, answer_seconds_total, "
        "asa_seconds, max_wait_seconds, sla_seconds, within_sla, service_level, expired, outcomes, group_ids)",
        "its key b'no-slash' is not <integration>/<queue>/<interval start>"], skipped


def test_since_until_integration_and_queue_select_by_interval_start(verb):
    def chosen(*argv: str) -> list[tuple[str, str, str]]:
        return selection(orjson.loads(verb(*argv, "--format", "json")))

    assert chosen(*window()) == selection([*FINAL_ACME, BETA_SALES_0900]), "sorted by integration, queue, start"
    assert chosen(*window("09:15", "10:00"), "--integration", "acme") == selection(
        [SALES_0915_LATE, SUPPORT_0930, UNDEFINED_0915]), "--until is exclusive, --since inclusive"
    assert chosen(*window(), "--queue", "Sales") == selection(
        [SALES_0900[2], SALES_0915_LATE, SALES_1000, BETA_SALES_0900])
    assert chosen(*window(), "--queue", "Support", "--queue", "Undefined_Queue") == selection(
        [SUPPORT_0930, SUPPORT_1015, UNDEFINED_0915])
    assert chosen("--since", "2024-05-05T23:00:00Z", "--until", f"{DAY}13:00:00Z", "--integration", "acme",
                  "--queue", "Sales") == selection([BEFORE, SALES_0900[2], SALES_0915_LATE, SALES_1000, AFTER])
    assert chosen("--since", "2024-05-06T11:00:00+02:00", "--until", "2024-05-06T11:15:00+02:00") == selection(
        [SALES_0900[2], BETA_SALES_0900]), "an offset is honoured"
    assert chosen("--since", "2h", "--integration", "live") == selection([LIVE]), "relative to now"
    assert chosen(*window(), "--integration", "nosuch") == []


def test_the_table_shows_one_line_per_interval_with_its_figures(verb):
    lines = verb(*window(), "--integration", "acme").splitlines()
    assert lines[0].split() == ["INTERVAL", "INTEGRATION", "QUEUE", "OFFERED", "HANDLED", "UNANSWERED", "AHT",
                                "ASA", "MAX", "WAIT", "SL", "%", "EXPIRED"]
    assert [line.split()[:5] for line in lines[1:]] == [
        ["2024-05-06", "09:00Z", "acme", "Sales", "3"], ["2024-05-06", "09:15Z", "acme", "Sales", "2"],
        ["2024-05-06", "10:00Z", "acme", "Sales", "4"], ["2024-05-06", "09:30Z", "acme", "Support", "2"],
        ["2024-05-06", "10:15Z", "acme", "Support", "1"], ["2024-05-06", "09:15Z", "acme", "Undefined_Queue", "1"]]
    # 10:00: 4 offered, 3 handled in 61.6 s each after 75 s (over the 60 s service level), 1 expired
    assert lines[3].split()[5:] == ["3", "1", "1:02", "1:15", "1:15", "0.0", "1"]
    assert lines[1].split()[5:] == ["1", "2", "1:40", "0:10", "1:40", "100.0", "2"]
    assert lines[5].split()[5:] == ["0", "1", "-", "-", "0:30", "-", "1"], "no handled contact: no averages"


def test_an_empty_table_says_so_in_one_line_on_stderr_naming_what_the_topic_holds(verb, topics, capsys):
    assert verb(*window("10:30", "11:00"), "--integration", "acme") == ""
    err = capsys.readouterr().err.splitlines()
    assert err == [f"intervals: no interval starts in {DAY}10:30:00Z .. {DAY}11:00:00Z, integration acme; "
                   f"{topics[0].intervals_topic} holds intervals starting 2024-05-05T23:45:00Z to "
                   f"{ms_to_short_time(CURRENT - 900_000)}"]
    assert verb(*window("10:30", "11:00"), "--format", "json") == "[]"
    assert rows(verb(*window("10:30", "11:00"), "--format", "csv")) == [
        [f for f in intervals.RECORD_FIELDS if f != "outcomes"]]
    assert rows(verb(*window("10:30", "11:00"), "--format", "genesys-csv")) == [GENESYS_HEADER]


def test_csv_has_every_field_of_the_record_with_outcomes_flattened(verb):
    table = list(csv.DictReader(io.StringIO(verb(*window(), "--integration", "acme", "--format", "csv"))))
    schema = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "interval.schema.json").read_text())
    assert tuple(schema["properties"]) == intervals.RECORD_FIELDS
    fields = [f for f in intervals.RECORD_FIELDS if f != "outcomes"]
    assert list(table[0]) == fields[:fields.index("group_ids")] + ["outcome_expired", "outcome_resolved",
                                                                   "group_ids"]
    assert [(r["queue"], r["interval_start"], r["revision"]) for r in table] == [
        (r["queue"], r["interval_start"], str(r["revision"])) for r in FINAL_ACME]
    assert table[2]["handle_seconds_total"] == "184.8" and table[2]["service_level"] == "0.0"
    assert table[2]["outcome_expired"] == "1" and table[2]["outcome_resolved"] == "3"
    assert table[5]["aht_seconds"] == "100.0" and table[3]["group_ids"] == "g-sup-1 g-sup-2"
    assert table[4]["aht_seconds"] == table[4]["service_level"] == "" and table[4]["max_wait_seconds"] == "30.0"
    assert {r["v"] for r in table} == {"1"}


def test_genesys_csv_has_the_documented_header_15_minute_utc_starts_and_zero_rows_for_gaps(verb):
    table = rows(verb(*window(), "--integration", "acme", "--format", "genesys-csv"))
    assert table[0] == GENESYS_HEADER
    assert all(GENESYS_START.match(row[0]) for row in table[1:]), table
    assert all(len(row) == len(GENESYS_HEADER) and row[2:5] == ["chat", "", ""] for row in table[1:])
    quarters = [f"{DAY}{t}:00Z" for t in ("09:00", "09:15", "09:30", "09:45", "10:00", "10:15")]
    assert table[1:] == [
        *[[at, "Sales", "chat", "", "", *figures] for at, figures in zip(quarters, [
            ("3", "1", "100"), ("2", "1", "80"), ("0", "0", "0"), ("0", "0", "0"), ("4", "3", "185"),
            ("0", "0", "0")])],
        *[[at, "Support", "chat", "", "", *figures] for at, figures in zip(quarters, [
            ("0", "0", "0"), ("0", "0", "0"), ("2", "2", "200"), ("0", "0", "0"), ("0", "0", "0"),
            ("1", "0", "0")])],
        *[[at, "Undefined_Queue", "chat", "", "", *figures] for at, figures in zip(quarters, [
            ("0", "0", "0"), ("1", "1", "100"), ("0", "0", "0"), ("0", "0", "0"), ("0", "0", "0"),
            ("0", "0", "0")])],
    ]
    # zero rows stop at the interval that holds now: intervals that have not begun are no data yet
    before = time.time() * 1000
    live = rows(verb("--since", ms_to_time(CURRENT - 1_800_000), "--until", ms_to_time(CURRENT + 3_600_000),
                     "--integration", "live", "--format", "genesys-csv"))
    after = time.time() * 1000
    starts = [parse_time(row[0]) for row in live[1:]]
    assert starts == list(range(CURRENT - 1_800_000, starts[-1] + 1, 900_000))
    assert starts[-1] in {before - before % 900_000, after - after % 900_000}, "the last row is the current interval"
    assert [row[5] for row in live[1:]][:3] == ["0", "1", "0"]


def test_a_wfm_file_refuses_what_it_cannot_say(verb, topics):
    with pytest.raises(UsageError, match="queue 'Sales' is in integrations acme and beta, and a WFM row names "
                                         "the queue alone: add --integration"):
        verb(*window(), "--format", "genesys-csv")
    with pytest.raises(UsageError, match="Genesys Cloud imports 15-minute intervals only, and these are "
                                         "30-minute ones; splitting them would invent figures"):
        verb(*window(), "--format", "genesys-csv", settings=topics[1])
    table = rows(verb(*window(), "--format", "injixo-csv", settings=topics[1]))
    assert [row[0] for row in table[1:]] == [f"{DAY}09:00:00Z", f"{DAY}09:30:00Z", f"{DAY}10:00:00Z"]


def test_injixo_csv_has_the_contact_event_fields_a_stable_queue_identifier_and_zero_rows(verb):
    table = rows(verb(*window("09:00", "10:00"), "--integration", "acme", "--format", "injixo-csv"))
    assert table[0] == INJIXO_HEADER
    quarters = [f"{DAY}{t}:00Z" for t in ("09:00", "09:15", "09:30", "09:45")]
    assert table[1:] == [
        *[[at, "g-sales", "Sales", "chats", *f] for at, f in zip(quarters, [
            ("3", "1", "100"), ("2", "1", "80"), ("0", "0", "0"), ("0", "0", "0")])],
        *[[at, "Support", "Support", "chats", *f] for at, f in zip(quarters, [  # two groups: its name
            ("0", "0", "0"), ("0", "0", "0"), ("2", "2", "200"), ("0", "0", "0")])],
        *[[at, "Undefined_Queue", "Undefined_Queue", "chats", *f] for at, f in zip(quarters, [
            ("0", "0", "0"), ("1", "1", "100"), ("0", "0", "0"), ("0", "0", "0")])],
    ]


def test_tz_labels_each_utc_interval_once_with_its_offset_on_the_night_the_clocks_go_back(verb):
    night = ["--since", "2024-10-26T23:45:00Z", "--until", "2024-10-27T02:00:00Z", "--queue", "Night"]
    lines = verb(*night, "--tz", "Europe/Berlin").splitlines()[1:]
    labels = [" ".join(line.split()[:2]) for line in lines]
    assert len(labels) == len(NIGHT) == len(set(labels)), "each UTC interval once, every label unique"
    assert labels == ["2024-10-27 01:45+02:00", "2024-10-27 02:00+02:00", "2024-10-27 02:15+02:00",
                      "2024-10-27 02:30+02:00", "2024-10-27 02:45+02:00", "2024-10-27 02:00+01:00",
                      "2024-10-27 02:15+01:00", "2024-10-27 02:30+01:00", "2024-10-27 02:45+01:00"]
    assert [" ".join(line.split()[:2]) for line in verb(*night).splitlines()[1:]][:2] == [
        "2024-10-26 23:45Z", "2024-10-27 00:00Z"]
    table = list(csv.DictReader(io.StringIO(verb(*night, "--tz", "Europe/Berlin", "--format", "csv"))))
    assert [(r["interval_start"], r["interval_start_local"]) for r in table][4:6] == [
        ("2024-10-27T00:45:00.000Z", "2024-10-27T02:45:00+02:00"),
        ("2024-10-27T01:00:00.000Z", "2024-10-27T02:00:00+01:00")]
    genesys = rows(verb(*night, "--tz", "Europe/Berlin", "--format", "genesys-csv"))
    assert [row[0] for row in genesys[1:]][:2] == ["2024-10-26T23:45:00Z", "2024-10-27T00:00:00Z"], "files stay UTC"


def test_a_bad_zone_or_time_is_one_usage_line_naming_the_flag(verb, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["intervals", "--since", "1d", "--tz", "Europe/Berln"])
    assert exited.value.code == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{PREFIX}argument --tz: 'Europe/Berln' is not a time zone: use an IANA name such as Europe/Berlin, "
        "America/New_York or UTC; see 'freshstream intervals --help'"]
    with pytest.raises(UsageError, match=r"^--since '2024-05-06T09:00:00' has no zone: add Z for UTC"):
        verb("--since", "2024-05-06T09:00:00")
    with pytest.raises(UsageError, match=r"^--until 2024-05-06T09:00:00Z is not after --since 2024-05-06T10:00:00Z"):
        verb(*window("10:00", "09:00"))
    assert rows(verb(*window(), "--integration", "acme", "--format", "genesys-csv", "--tz", "UTC"))[0] == \
        GENESYS_HEADER
    assert capsys.readouterr().err == ("freshstream: warning: --tz labels the table and csv only; --format "
                                       "genesys-csv stays UTC\n")


def run_cli(settings, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "connectors.cli", "intervals", *args], env=settings_env(settings),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_what_a_terminal_shows_a_missing_topic_in_one_line_and_an_empty_table_in_one_line(topics):
    settings = topics[0]
    missing = settings.replace(intervals_topic=settings.intervals_topic + "-typo")
    processes = {"missing topic": run_cli(missing, "--since", "1d"),
                 "empty": run_cli(topics[1], *window("10:30", "11:00"))}  # a topic without malformed records
    results = {}
    for name, process in processes.items():
        try:
            out, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        results[name] = (process.returncode, out, err)

    code, out, err = results["missing topic"]
    assert code == 1 and out == "", results["missing topic"]
    assert err.splitlines() == [
        f"{PREFIX}topic {missing.intervals_topic} does not exist on {settings.bootstrap}: check "
        "FRESHSTREAM_INTERVALS_TOPIC, or start 'freshstream worker' or 'freshstream ingress' once, which create "
        "freshstream's topics"]
    code, out, err = results["empty"]
    assert code == 0 and out == "", results["empty"]
    assert len(err.splitlines()) == 1 and err.startswith(f"intervals: no interval starts in {DAY}10:30:00Z"), err
