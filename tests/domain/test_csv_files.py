"""The CSV sink's fold (streams/domain/csv_files.py), without a broker or a disk.

The properties run the sink's loop over a dict for a disk: contact histories written as the
worker writes them (revision_plan: a move is a retraction under the old queue, then the moved
contact under the new one), one stream per queue as the contacts topic's partitions are, read
in any interleaving, with repeats, written out at any point, and stopped at any point and
started again from the disk and the committed offsets. The files must always end as the final
contacts say, each contact in exactly one file.
"""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from streams.domain.contact import final_revisions, revision_plan
from streams.domain.csv_files import (CONTACT_COLUMNS, INTERVAL_COLUMNS, RowFiles, contact_cells, contact_change,
                                      interval_cells, interval_change, queue_identifier)
from streams.domain.times import ms_to_file_stamp, ms_to_time, parse_file_stamp, parse_time
from tests.contact_records import contact, retraction
from tests.interval_records import interval

NINE = parse_time("2024-05-06T09:00:00.000Z")
QUEUES = ("Sales", "Support", "Undefined_Queue")
END = 10**15  # "now" for due(): every period has ended


def test_columns_are_the_interval_record_fields_and_a_queue_identifier():
    from connectors.cli.intervals import RECORD_FIELDS
    assert [c for c in INTERVAL_COLUMNS if c != "queue_identifier"] == [f for f in RECORD_FIELDS if f != "v"]


def test_a_contact_row_spells_values_as_json_does():
    row = dict(zip(CONTACT_COLUMNS, contact_cells({**contact("c1", 2, "Sales", "2024-05-06T09:10:00.000Z"),
                                                   "first_response_at": None, "wait_seconds": None})))
    assert row["revision"] == "2" and row["offered"] == "true" and row["first_response_at"] == ""
    assert row["wait_seconds"] == "" and row["duration_seconds"] == "600.0" and row["messages_user"] == "2"
    assert row["queue_identifier"] == "g-sales"


def test_file_names_are_the_period_start_without_colons():
    assert ms_to_file_stamp(NINE + 15 * 60_000) == "2024-05-06T0915Z"
    assert parse_file_stamp("2024-05-06T0915Z") == NINE + 15 * 60_000
    assert parse_file_stamp("2024-02-30T0915Z") is None and parse_file_stamp("notes") is None


def test_queue_identifier_is_the_one_group_or_the_name():
    assert queue_identifier("Sales", ["g1", "g1", None]) == "g1"
    assert queue_identifier("Sales", ["g1", "g2"]) == "Sales"
    assert queue_identifier("Undefined_Queue", ["g1"]) == "Undefined_Queue"


def test_contacts_go_by_attribution_and_rotation():
    c = {**contact("c1", 1, "Sales", "2024-05-06T10:02:00.000Z"), "started_at": "2024-05-06T09:44:00.000Z"}
    assert contact_change(c, 15, "started")[2] == ("acme", parse_time("2024-05-06T09:30:00Z"))
    assert contact_change(c, 60, "started")[2] == ("acme", NINE)
    assert contact_change(c, 60, "resolved")[2] == ("acme", NINE + 3_600_000)
    assert contact_change(retraction("c1", 2, "Sales"), 15, "started")[2:] == (None, None)


def test_interval_rows_go_to_the_period_their_start_is_in():
    record = interval("acme", "Sales", "2024-05-06T09:45:00.000Z", 3, outcomes={"resolved": 2, "expired": 1})
    key, order, file, cells = interval_change(record, 60)
    assert file == ("acme", NINE) and order == (3, record["updated_at"])
    assert dict(zip(INTERVAL_COLUMNS, cells))["outcomes"] == "expired=1 resolved=2"
    assert interval_cells(record) == cells


def test_a_late_revision_rewrites_a_written_file_and_a_stale_one_does_not():
    disk: dict = {}
    files = RowFiles("contacts", 15, lambda file: disk.get(file, []))
    files.put(*contact_change(contact("c1", 2, "Sales", "2024-05-06T09:10:00.000Z"), 15, "started"), 0.0, ("p", 0))
    _write_due(files, disk, 1.0, 0)
    assert not files.pending and _revisions(disk) == {"acme:c1:1": "2"}
    assert not files.put(*contact_change(contact("c1", 1, "Sales", "x"), 15, "started"), 2.0, ("p", 1))
    assert not files.pending
    files.put(*contact_change(retraction("c1", 3, "Sales"), 15, "started"), 3.0, ("p", 2))
    assert files.holds() == {"p": 2}
    assert files.due(END, 3.5, 1.0) == [] and files.due(END, 4.0, 1.0) == [("acme", NINE)]
    _write_due(files, disk, 4.0, 1.0)
    assert disk == {("acme", NINE): []}  # header only: the WFM's re-import clears the interval


def test_a_row_found_in_two_files_stays_in_the_newer():
    old = contact_cells(contact("c1", 1, "Sales", "2024-05-06T09:10:00.000Z"))
    new = contact_cells({**contact("c1", 2, "Sales", "2024-05-06T09:40:00.000Z"),
                         "started_at": "2024-05-06T09:35:00.000Z"})
    later = ("acme", NINE + 30 * 60_000)
    disk = {("acme", NINE): [old], later: [new]}
    files = RowFiles("contacts", 15, lambda file: disk.get(file, []))
    for file, rows in disk.items():
        files.seed(file, rows, 0.0)
    assert list(files.pending) == [("acme", NINE)] and files.holds() == {}
    _write_due(files, disk, 0.0, 0)
    assert disk == {("acme", NINE): [], later: [new]}


# --- the properties --------------------------------------------------------------------------

@st.composite
def histories(draw):
    """Per contact, the states it goes through: (queue, start minute) or None (does not exist)."""
    state = st.one_of(st.none(), st.tuples(st.sampled_from(QUEUES), st.sampled_from((0, 10, 20, 40, 70))))
    return draw(st.lists(st.lists(state, min_size=1, max_size=5), min_size=1, max_size=6))


def emitted(history_list, order) -> list[dict]:
    """The records the worker writes, in the order its changes happen (`order` picks the contact)."""
    steps = [list(h) for h in history_list]
    live: list = [None] * len(steps)
    revision = [0] * len(steps)
    records = []
    for pick in order:
        i = pick % len(steps)
        if not steps[i]:
            continue
        new = steps[i].pop(0)
        queue = live[i][0] if live[i] else None
        for rev, q, retracted in revision_plan(revision[i], queue, new[0] if new else None):
            name = f"c{i}"
            records.append(retraction(name, rev, q) if retracted else {
                **contact(name, rev, q, ms_to_time(NINE + new[1] * 60_000 + 300_000), agent_id=f"a-{rev}"),
                "started_at": ms_to_time(NINE + new[1] * 60_000)})
            revision[i] = rev
        live[i] = new
    return records


def expected(records, rotate=15) -> dict:
    """file -> {contact_id: revision} of the final live contacts."""
    out: dict = {}
    for c in final_revisions(records).values():
        if not c["retracted"]:
            _, _, file, _ = contact_change(c, rotate, "started")
            out.setdefault(file, {})[c["contact_id"]] = str(c["revision"])
    return out


def _revisions(disk) -> dict:
    return {row[0]: row[1] for rows in disk.values() for row in rows}


def _write_due(files: RowFiles, disk: dict, now: float, settle: float) -> None:
    for file in files.due(END, now, settle):
        disk[file] = files.content(file)
        files.written(file)


def _non_empty(disk) -> dict:
    return {file: {row[0]: row[1] for row in rows} for file, rows in disk.items() if rows}


@settings(max_examples=300, deadline=None)
@given(histories(), st.lists(st.integers(0, 5), max_size=40), st.data())
def test_any_reading_order_with_repeats_and_stops_ends_at_the_final_contacts(history_list, order, data):
    records = emitted(history_list, order + list(range(6)) * 5)
    streams = {q: [r for r in records if r["queue"] == q] for q in QUEUES}
    for q, stream in streams.items():  # a crashed worker re-sends a revision in its partition, before the next
        for _ in range(data.draw(st.integers(0, 2), label=f"repeats {q}")):
            if stream:
                at = data.draw(st.integers(0, len(stream) - 1))
                following = [i for i in range(at + 1, len(stream)) if stream[i]["contact_id"] == stream[at]["contact_id"]
                             and stream[i]["revision"] > stream[at]["revision"]]
                stream.insert(data.draw(st.integers(at + 1, following[0] if following else len(stream))),
                              dict(stream[at]))
    disk: dict = {}
    committed = {q: 0 for q in QUEUES}
    files = RowFiles("contacts", 15, lambda file: disk.get(file, []))
    position = dict(committed)
    clock = 0.0
    while any(position[q] < len(streams[q]) for q in QUEUES):
        clock += 1
        q = data.draw(st.sampled_from([q for q in QUEUES if position[q] < len(streams[q])]), label="partition")
        files.put(*contact_change(streams[q][position[q]], 15, "started"), clock, (q, position[q]))
        position[q] += 1
        _write_due(files, disk, clock, data.draw(st.sampled_from((0, 2, 100)), label="settle"))
        held = files.holds()
        committed = {p: min(position[p], held.get(p, position[p])) for p in QUEUES}
        if data.draw(st.booleans(), label="stop here"):  # SIGKILL: what is on disk and committed is all there is
            files = RowFiles("contacts", 15, lambda file: disk.get(file, []))
            for file, rows in disk.items():
                files.seed(file, rows, clock)
            position = dict(committed)
    _write_due(files, disk, clock + 1, 0)
    assert not files.pending
    assert _non_empty(disk) == expected(records)
    ids = [row[0] for rows in disk.values() for row in rows]
    assert len(ids) == len(set(ids))  # each contact in one file, once
