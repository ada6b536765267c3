"""Interval statistics: whatever the contacts topic holds and however it is read, the intervals
the aggregator emits end up as the group-by of the final contacts.

The contacts topic is written here as the worker writes it (docs/contacts.md): revisions by
`revision_plan` (a move retracts under the old queue, then the next revision under the new),
re-sent revisions (same number and content, later emitted_at), keyed `<integration>/<queue>`
so that a queue's records sit in one partition, in order. Each partition is fed to one
IntervalAggregator in random batches, interleaved with the other partitions; the truth per
interval key is the emitted record with the highest revision, and it must agree figure for
figure with `group_by` over the final contacts (an interval written with zero contacts is one
whose contacts all left: group_by has no such key). The crash property drops any subset of a
batch's emissions or state writes and resumes from an earlier offset.
"""

from __future__ import annotations

import asyncio
import random
import zlib

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from streams.domain.contact import final_revisions, revision_plan
from streams.domain.interval_figures import figures, group_by, member_of
from streams.domain.intervals import IntervalAggregator, IntervalState
from streams.domain.keys import contact_key, interval_key, split_interval_key
from streams.domain.times import ms_to_time, parse_time
from tests.schemas import assert_valid

START_MS = 1_714_982_400_000  # 2024-05-06T08:00:00Z, on the hour
EMITTED_MS = START_MS + 86_400_000  # emitted_at of the first contacts record; one second per record after it
MINUTE = 60_000
QUEUES = {"acme": ["Sales", "Support", "EU/Billing", "Undefined_Queue"],  # queue names may hold a slash
          "beta-2": ["Sales", "Night/Shift/B", "Undefined_Queue"]}
UNCOUNTED = {"deleted", "spam"}  # outcomes that land in Undefined_Queue (queue_for)
FIGURES = tuple(figures([], 60_000))
IDENTITY = ("v", "integration", "queue", "interval_start", "interval_minutes", "attribution")


# --- contacts as the worker writes them ------------------------------------------------------------

def contact(integration: str = "acme", queue: str = "Sales", conversation: str = "c1", cycle: int = 1,
            revision: int = 1, *, start: int = START_MS, duration: int = 300_000, wait: int | None = 30_000,
            offered: bool = True, handled: bool = True, outcome: str = "resolved", group: str | None = "g-1",
            emitted: int | None = None) -> dict:
    """A live contact record (schemas/contact.schema.json); times in epoch ms."""
    return {
        "v": 1, "contact_id": f"{integration}:{conversation}:{cycle}", "revision": revision, "retracted": False,
        "integration": integration, "source": "freshchat", "channel": "chats", "conversation_id": conversation,
        "cycle": cycle, "queue": queue, "group_id": group, "agent_id": "a-1" if handled else None,
        "outcome": outcome, "resolved_by": "system" if outcome == "expired" else "agent",
        "started_at": ms_to_time(start), "first_response_at": None if wait is None else ms_to_time(start + wait),
        "resolved_at": ms_to_time(start + duration), "wait_seconds": None if wait is None else wait / 1000,
        "duration_seconds": duration / 1000, "offered": offered, "handled": handled,
        "messages": {"user": int(offered), "agent": int(handled), "bot": 0, "system": 0, "private": 0},
        "emitted_at": ms_to_time(EMITTED_MS if emitted is None else emitted),
    }


def retraction(integration: str = "acme", queue: str = "Sales", conversation: str = "c1", cycle: int = 1,
               revision: int = 2, *, emitted: int | None = None) -> dict:
    return {"v": 1, "contact_id": f"{integration}:{conversation}:{cycle}", "revision": revision, "retracted": True,
            "integration": integration, "source": "freshchat", "channel": "chats", "conversation_id": conversation,
            "cycle": cycle, "queue": queue, "emitted_at": ms_to_time(EMITTED_MS if emitted is None else emitted)}


def kafka(records: list[dict], first_offset: int = 0) -> list[tuple[bytes, bytes, int]]:
    """Contacts records as one partition delivers them: (key, value, offset)."""
    return [(contact_key(r["integration"], r["queue"]), orjson.dumps(r), first_offset + n)
            for n, r in enumerate(records)]


# --- running the aggregator ------------------------------------------------------------------------

class Crash(Exception):
    """The worker died in the middle of a batch."""


class Journal(dict):
    """A plain table that remembers what each key held before the batch in flight, so that a
    crash can drop any subset of that batch's writes (each key's write survives or not)."""

    def __init__(self) -> None:
        super().__init__()
        self.before: dict = {}

    def __setitem__(self, key, value) -> None:
        self.before.setdefault(key, self.get(key, Journal))
        super().__setitem__(key, value)

    def __delitem__(self, key) -> None:
        self.before.setdefault(key, self.get(key, Journal))
        super().__delitem__(key)

    def done(self) -> None:
        self.before = {}

    def crash(self, survives) -> None:
        for key, old in self.before.items():
            if not survives(key):
                if old is Journal:
                    self.pop(key, None)
                else:
                    super().__setitem__(key, old)
        self.before = {}


class Worker:
    """An aggregator over tables that outlive it, collecting every interval record emitted."""

    def __init__(self, minutes: int = 15, attribution: str = "started", sla_seconds: float = 60.0,
                 retention_ms: int = 35 * 86_400_000) -> None:
        self.intervals = Journal()
        self.emitted: list[tuple[bytes, dict]] = []
        self.skips: list[str] = []
        self.crash_in: str | None = None  # "emit" or "write": the next batch dies there
        self.salt = 0
        self.survives = self._coin  # which state writes of a dying batch were made
        self.options = dict(minutes=minutes, attribution=attribution, sla_seconds=sla_seconds,
                            retention_ms=retention_ms)
        self.restart()

    def restart(self) -> None:
        self.aggregator = IntervalAggregator(intervals=self.intervals, emit=self._emit,
                                             flush=self._flush, clock=lambda: EMITTED_MS / 1000 + 7200,
                                             on_skip=self.skips.append, **self.options)

    def _coin(self, key: bytes) -> bool:
        """Heads or tails per key and crash, whatever order the keys come in (set order is not
        the same from one process to the next, and hypothesis replays failures across them)."""
        return zlib.crc32(key, self.salt) & 1 == 1

    async def _emit(self, records: list[tuple[bytes, bytes]]) -> None:
        if self.crash_in == "emit":  # some sends were acknowledged, none of the writes made
            self.emitted.extend((k, orjson.loads(v)) for k, v in records if self._coin(k))
            raise Crash
        self.emitted.extend((k, orjson.loads(v)) for k, v in records)

    async def _flush(self) -> None:
        if self.crash_in == "write":  # everything sent; each state write survived or not
            self.intervals.crash(self.survives)
            raise Crash

    def process(self, records) -> list[dict]:
        """One batch that completes; returns what it emitted."""
        out = asyncio.run(self.aggregator.process(records))
        self.intervals.done()
        return out

    async def batch(self, records) -> bool:
        """One batch; False when the worker died in it (its tables hold what survived)."""
        try:
            await self.aggregator.process(records)
        except Crash:
            self.crash_in = None
            self.restart()
            return False
        self.intervals.done()
        return True

    def latest(self) -> dict[bytes, dict]:
        """The truth per interval key: the emitted record with the highest revision."""
        best: dict[bytes, dict] = {}
        for key, record in self.emitted:
            if key not in best or record["revision"] > best[key]["revision"]:
                best[key] = record
        return best


def final_intervals(emitted: dict[bytes, dict]) -> dict[tuple, dict]:
    """(integration, queue, start ms) -> figures and group ids, of the intervals that hold contacts."""
    out = {}
    for key, record in emitted.items():
        assert key == interval_key(record["integration"], record["queue"], record["interval_start"])
        if record["contacts"]:
            out[(record["integration"], record["queue"], parse_time(record["interval_start"]))] = {
                **{f: record[f] for f in FIGURES}, "group_ids": record["group_ids"]}
    return out


def expected_intervals(topic: list[dict], minutes: int, attribution: str, sla_ms: int) -> dict[tuple, dict]:
    """group_by over the final contacts, with the group ids each interval's contacts carry."""
    final = [c for c in final_revisions(topic).values() if not c["retracted"]]
    expected = group_by(final, minutes, attribution, sla_ms)
    groups: dict[tuple, set] = {}
    for c in final:
        at = parse_time(c["started_at" if attribution == "started" else "resolved_at"])
        groups.setdefault((c["integration"], c["queue"], at - at % (minutes * MINUTE)), set()).add(c["group_id"])
    return {key: {**figs, "group_ids": sorted(g for g in groups[key] if g)} for key, figs in expected.items()}


def consistent(emitted: list[tuple[bytes, dict]]) -> None:
    """Two records of one interval with one revision say the same (a replay repeats, never differs)."""
    seen: dict[tuple, dict] = {}
    for key, record in emitted:
        figs = {f: record[f] for f in (*IDENTITY, *FIGURES, "group_ids")}
        assert seen.setdefault((key, record["revision"]), figs) == figs, f"{key!r} r{record['revision']} differs"


# --- the topic, drawn ------------------------------------------------------------------------------

offsets_ms = st.one_of(
    st.integers(0, 4 * 60 * MINUTE),  # anywhere in four hours
    st.builds(lambda k, d: k * 15 * MINUTE + d, st.integers(1, 16), st.sampled_from([-1, 0, 1])))  # at a boundary
waits_ms = st.one_of(st.none(), st.integers(0, 300_000), st.sampled_from([20_000, 60_000, 60_001]))


@st.composite
def versions(draw, integration: str):
    """One state of a contact: its queue and everything the interval figures read."""
    outcome = draw(st.sampled_from(["resolved", "resolved", "expired", "deleted", "spam"]))
    group = draw(st.sampled_from([None, "g-1", "g-2"]))
    queue = "Undefined_Queue" if outcome in UNCOUNTED or group is None else draw(
        st.sampled_from(QUEUES[integration]))
    return dict(queue=queue, start=START_MS + draw(offsets_ms), duration=draw(st.integers(0, 40 * MINUTE)),
                wait=draw(waits_ms), offered=draw(st.booleans()), handled=draw(st.booleans()), outcome=outcome,
                group=group)


@st.composite
def histories(draw, integration: str, conversation: str):
    """A contact's records in the order the worker writes them: each step a new version or the
    contact ceasing to exist, written as revision_plan says; any record may be re-sent."""
    records, revision, live = [], 0, None
    for _ in range(draw(st.integers(1, 6))):
        version = draw(st.one_of(versions(integration), st.just(None))) if records else draw(versions(integration))
        new_queue = None if version is None else version["queue"]
        for number, queue, retracted in revision_plan(revision, live, new_queue):
            record = retraction(integration, queue, conversation, 1, number) if retracted else contact(
                integration, conversation=conversation, revision=number, **version)
            records.append(record)
            if draw(st.integers(0, 7)) == 0:
                records.append(dict(record))  # re-sent after a crash: emitted_at is set later
            revision = number
        live = new_queue
    return records


@st.composite
def topics(draw, late: bool = False):
    """The contacts topic: {partition: [record, ...]} in offset order, and every record written."""
    integrations = draw(st.sampled_from([["acme"], ["acme", "beta-2"]]))
    lists = [draw(histories(integration, f"conv-{n}"))
             for n in range(draw(st.integers(1, 10))) for integration in [draw(st.sampled_from(integrations))]]
    rnd = draw(st.randoms(use_true_random=True))  # one seed: quicker to shrink than a draw per call
    written = []
    while any(lists):  # the contacts of all chats interleaved, each one's own records in order
        records = rnd.choice([r for r in lists if r])
        written.append(dict(records.pop(0), emitted_at=ms_to_time(EMITTED_MS + 1000 * len(written))))
    count = draw(st.integers(1, 3))
    keys = sorted({contact_key(i, q) for i in QUEUES for q in QUEUES[i]})
    partition_of = dict(zip(keys, draw(st.lists(st.integers(0, count - 1), min_size=len(keys),
                                                max_size=len(keys)))))
    partitions: dict[int, list[dict]] = {p: [] for p in range(count)}
    for record in written:
        partitions[partition_of[contact_key(record["integration"], record["queue"])]].append(record)
    if late:  # an older record delivered again later in its partition: it must change nothing
        for records in partitions.values():
            for _ in range(draw(st.integers(0, 3)) if records else 0):
                at = rnd.randrange(len(records))
                records.insert(rnd.randint(at + 1, len(records)), records[at])
    return partitions, written


aggregations = st.tuples(st.sampled_from([15, 30, 60]), st.sampled_from(["started", "resolved"]),
                         st.sampled_from([20.0, 60.0]))


async def feed(worker: Worker, partitions: dict[int, list[dict]], rnd: random.Random, crashes: int = 0) -> None:
    """Every partition's records in random batches, the partitions interleaved; `crashes` times
    the batch in flight dies (in its emission or its writes) and the worker resumes every
    partition from its committed offset or from anywhere before it."""
    topic = {p: kafka(records) for p, records in partitions.items()}
    committed = {p: 0 for p in topic}
    position = dict(committed)
    while any(position[p] < len(topic[p]) for p in topic):
        p = rnd.choice([p for p in topic if position[p] < len(topic[p])])
        size = rnd.choice([1, 2, 4, 8, 16, 50])
        batch = topic[p][position[p]:position[p] + size]
        if crashes and rnd.random() < 0.5:
            crashes -= 1
            worker.crash_in, worker.salt = rnd.choice(["emit", "write"]), rnd.getrandbits(32)
        if await worker.batch(batch):
            position[p] += len(batch)
            committed[p] = position[p]
        else:
            for q in topic:  # at least once: from the committed offset, or from further back
                position[q] = rnd.randint(0, committed[q]) if rnd.random() < 0.5 else committed[q]


# --- the properties --------------------------------------------------------------------------------

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(topics(late=True), aggregations, st.randoms(use_true_random=True))
def test_the_latest_intervals_are_the_group_by_of_the_final_contacts(topic, aggregation, rnd):
    partitions, written = topic
    minutes, attribution, sla = aggregation
    worker = Worker(minutes, attribution, sla)
    asyncio.run(feed(worker, partitions, rnd))
    assert final_intervals(worker.latest()) == expected_intervals(written, minutes, attribution, round(sla * 1000))
    consistent(worker.emitted)
    for key in {k for k, _ in worker.emitted}:  # without a crash each interval's revisions only go up
        revisions = [r["revision"] for k, r in worker.emitted if k == key]
        assert revisions == sorted(set(revisions)) and revisions[0] >= 1
    assert set(worker.skips) <= {"older_revision"}


@PROPERTY
@given(topics(), aggregations, st.randoms(use_true_random=True), st.integers(1, 5))
def test_crashes_and_replays_count_nothing_twice_and_lose_nothing(topic, aggregation, rnd, crashes):
    partitions, written = topic
    minutes, attribution, sla = aggregation
    worker = Worker(minutes, attribution, sla)
    asyncio.run(feed(worker, partitions, rnd, crashes))
    latest = worker.latest()
    assert final_intervals(latest) == expected_intervals(written, minutes, attribution, round(sla * 1000))
    consistent(worker.emitted)
    fresh = Worker(minutes, attribution, sla)  # the whole topic again, into empty tables, batched otherwise
    asyncio.run(feed(fresh, partitions, random.Random(rnd.random())))
    assert {k: (r["revision"], final_intervals({k: r})) for k, r in fresh.latest().items()} == \
        {k: (r["revision"], final_intervals({k: r})) for k, r in latest.items()}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topics(late=True), aggregations, st.randoms(use_true_random=True), st.integers(1, 5))
def test_crashes_with_older_records_redelivered_still_end_at_the_group_by(topic, aggregation, rnd, crashes):
    """The worker never writes an older revision after a newer one under a queue's key; were it
    to, a crash replay may count more changes than a clean run (higher revision numbers), but
    the figures still come out right."""
    partitions, written = topic
    minutes, attribution, sla = aggregation
    worker = Worker(minutes, attribution, sla)
    asyncio.run(feed(worker, partitions, rnd, crashes))
    assert final_intervals(worker.latest()) == expected_intervals(written, minutes, attribution, round(sla * 1000))


@settings(max_examples=20, deadline=None)
@given(topics(late=True))
def test_the_drawn_contacts_are_what_the_schema_allows(topic):
    for record in topic[1]:
        assert_valid("contact", record)


# --- moves, revisions, boundaries ------------------------------------------------------------------

def figures_of(record: dict) -> dict:
    return {f: record[f] for f in FIGURES}


def test_a_contact_moved_to_another_queue_takes_its_counts_along():
    worker = Worker()
    [a] = worker.process(kafka([contact(queue="Sales")]))
    assert (a["queue"], a["contacts"], a["revision"]) == ("Sales", 1, 1)
    [gone] = worker.process(kafka([retraction(queue="Sales", revision=2)], 1))  # the move: n+1 under A ...
    assert (gone["queue"], gone["contacts"], gone["revision"], gone["outcomes"]) == ("Sales", 0, 2, {})
    [b] = worker.process(kafka([contact(queue="Support", revision=3)]))  # ... n+2 under B, in B's partition
    assert (b["queue"], b["contacts"], b["revision"], b["handled"]) == ("Support", 1, 1, 1)
    assert figures_of(b) == figures_of(a)
    for record in (a, gone, b):
        assert_valid("interval", record)


def test_a_contact_revised_ten_times_counts_once():
    worker = Worker()
    records = [contact(revision=n, duration=60_000 * n, emitted=EMITTED_MS + n) for n in range(1, 11)]
    out = worker.process(kafka(records))
    assert len(out) == 1 and out[0]["contacts"] == 1 and out[0]["handle_seconds_total"] == 600.0
    assert out[0]["revision"] == 10  # each record changed it
    again = worker.process(kafka(records[-1:], 10))  # the last one re-read: nothing changes
    assert again == [] and worker.latest()[interval_key("acme", "Sales", ms_to_time(START_MS))]["revision"] == 10


def test_a_revision_moving_the_start_across_a_boundary_moves_the_contact():
    worker = Worker()
    worker.process(kafka([contact(start=START_MS + 14 * MINUTE + 59_999)]))
    out = {r["interval_start"]: r for r in worker.process(kafka([contact(start=START_MS + 15 * MINUTE,
                                                                          revision=2)], 1))}
    assert out[ms_to_time(START_MS)]["contacts"] == 0 and out[ms_to_time(START_MS)]["revision"] == 2
    assert out[ms_to_time(START_MS + 15 * MINUTE)]["contacts"] == 1
    out = {r["interval_start"]: r for r in worker.process(kafka([contact(start=START_MS + 1, revision=3)], 2))}
    assert out[ms_to_time(START_MS)]["contacts"] == 1 and out[ms_to_time(START_MS)]["revision"] == 3
    assert out[ms_to_time(START_MS + 15 * MINUTE)]["contacts"] == 0


def test_resolved_attribution_counts_a_contact_where_it_closed():
    worker = Worker(attribution="resolved")
    [record] = worker.process(kafka([contact(start=START_MS + 10 * MINUTE, duration=20 * MINUTE)]))
    assert record["interval_start"] == ms_to_time(START_MS + 30 * MINUTE) and record["attribution"] == "resolved"
    assert_valid("interval", record)


@pytest.mark.parametrize("minutes", [15, 30, 60])
def test_intervals_align_to_the_hour(minutes):
    worker = Worker(minutes=minutes)
    late = START_MS + 59 * MINUTE + 59_999  # 08:59:59.999
    [record] = worker.process(kafka([contact(start=late)]))
    assert record["interval_start"] == ms_to_time(START_MS + 60 * MINUTE - minutes * MINUTE)
    assert record["interval_minutes"] == minutes
    assert_valid("interval", record)


def test_an_older_revision_after_a_newer_one_changes_nothing():
    worker = Worker()
    newer, older = contact(revision=3, handled=False), contact(revision=2, emitted=EMITTED_MS - 1)
    worker.process(kafka([newer]))
    assert worker.process(kafka([older], 1)) == []
    resent_earlier = dict(newer, handled=True, emitted_at=ms_to_time(EMITTED_MS - 1))  # same number, earlier
    assert worker.process(kafka([resent_earlier], 2)) == []
    assert worker.skips == ["older_revision", "older_revision"]
    [record] = worker.latest().values()
    assert (record["handled"], record["revision"]) == (0, 1)


def test_a_resent_revision_changes_nothing():
    worker = Worker()
    first = contact(revision=1)
    worker.process(kafka([first]))
    assert worker.process(kafka([dict(first, emitted_at=ms_to_time(EMITTED_MS + 5))], 1)) == []
    assert worker.skips == []


def test_a_retraction_of_the_only_contact_writes_the_interval_once_more_with_zeros():
    worker = Worker()
    worker.process(kafka([contact(conversation="c1"), contact(conversation="c2", handled=False)]))
    [record] = worker.process(kafka([retraction(conversation="c1"), retraction(conversation="c2")], 2))
    assert (record["contacts"], record["revision"], record["max_wait_seconds"]) == (0, 4, None)
    assert record["group_ids"] == [] and record["outcomes"] == {}
    assert_valid("interval", record)
    assert worker.process(kafka([retraction(conversation="c3", revision=1)], 4)) == []  # never seen: nothing


def test_a_replayed_batch_where_one_interval_survived_makes_the_same_changes_again():
    """A batch moves a contact to another interval and back; the worker dies with one interval
    written and the other not. The replay must make the same changes again, or the intervals'
    next revisions fall below the ones already emitted and the truth goes stale."""
    here, there = START_MS, START_MS + 30 * MINUTE
    worker = Worker()
    worker.process(kafka([contact(conversation="other", start=there)]))
    batch = kafka([contact(start=here), contact(start=there, revision=2, emitted=EMITTED_MS + 1),
                   contact(start=here, revision=3, emitted=EMITTED_MS + 2)], 1)
    survivor = interval_key("acme", "Sales", ms_to_time(here))
    worker.crash_in, worker.survives = "write", lambda key: key == survivor
    assert not asyncio.run(worker.batch(batch))
    assert asyncio.run(worker.batch(batch))
    worker.process(kafka([contact(conversation="late", start=there, handled=False)], 4))
    consistent(worker.emitted)
    assert {k: r["contacts"] for k, r in worker.latest().items()} == {
        interval_key("acme", "Sales", ms_to_time(here)): 1, interval_key("acme", "Sales", ms_to_time(there)): 2}
    clean = Worker()
    clean.process(kafka([contact(conversation="other", start=there)]))
    clean.process(batch)
    clean.process(kafka([contact(conversation="late", start=there, handled=False)], 4))
    assert {k: r["revision"] for k, r in worker.latest().items()} == \
        {k: r["revision"] for k, r in clean.latest().items()}


# --- figures ---------------------------------------------------------------------------------------

def test_figures_without_a_handled_contact_have_no_averages():
    [record] = Worker().process(kafka([contact(handled=False, offered=True, wait=None, duration=90_000),
                                       contact(conversation="c2", handled=False, offered=False, wait=None)]))
    assert (record["aht_seconds"], record["asa_seconds"], record["service_level"]) == (None, None, None)
    assert (record["contacts"], record["offered"], record["unanswered"], record["handled"]) == (2, 1, 1, 0)
    assert record["max_wait_seconds"] == 90.0  # an unanswered chat waited until it closed
    assert_valid("interval", record)


def test_max_wait_is_the_wait_of_a_handled_contact_and_the_duration_of_an_unanswered_one():
    members = [member_of(contact(wait=40_000, duration=500_000)),
               member_of(contact(handled=False, wait=None, duration=30_000))]
    assert figures(members, 60_000)["max_wait_seconds"] == 40.0
    members.append(member_of(contact(handled=False, wait=None, duration=45_500)))
    assert figures(members, 60_000)["max_wait_seconds"] == 45.5
    assert figures([member_of(contact(offered=False, handled=False, duration=999_000))], 60_000)[
        "max_wait_seconds"] is None  # not offered: no wait at all


def test_a_wait_equal_to_the_sla_is_within_it():
    members = [member_of(contact(wait=60_000)), member_of(contact(wait=60_001)), member_of(contact(wait=0))]
    result = figures(members, 60_000)
    assert (result["within_sla"], result["service_level"], result["sla_seconds"]) == (2, round(2 / 3, 4), 60.0)
    assert result["aht_seconds"] == 300.0 and result["asa_seconds"] == round(120.001 / 3, 3)


def test_figures_by_outcome():
    members = [member_of(contact(outcome=o)) for o in ["resolved", "expired", "expired", "spam"]]
    result = figures(members, 60_000)
    assert result["expired"] == 2 and result["outcomes"] == {"expired": 2, "resolved": 1, "spam": 1}


# --- retention -------------------------------------------------------------------------------------

def test_prune_forgets_old_intervals_and_skips_contacts_for_them():
    day = 86_400_000
    worker = Worker(retention_ms=2 * day)
    worker.process(kafka([contact(conversation="old"), contact(conversation="new", start=START_MS + 3 * day)]))
    assert asyncio.run(worker.aggregator.prune()) == 1
    assert list(worker.intervals) == [interval_key("acme", "Sales", ms_to_time(START_MS + 3 * day))]
    assert worker.process(kafka([contact(conversation="old", revision=2, handled=False),
                                 contact(conversation="older", start=START_MS + day - 1)], 2)) == []
    assert worker.skips == ["too_old", "too_old"]
    [record] = worker.process(kafka([contact(conversation="edge", start=START_MS + day)], 4))  # at the horizon
    assert record["interval_start"] == ms_to_time(START_MS + day)
    assert asyncio.run(worker.aggregator.prune()) == 0
