"""The injixo delivery ledger: whatever the order of revisions and wherever the sink crashes, the
WFM's sums equal the final contacts' (streams/domain/delivery.py). No broker: the state topic, the
committed offset and injixo are plain lists and dicts here, as the sink uses them."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings, strategies as st

from streams.domain.contact import final_revisions
from streams.domain.delivery import Batch, Ledger, Row, difference, row_of
from streams.domain.keys import contact_key, delivery_line_key

QUEUES = ("Support", "Sales", "Undefined_Queue")


def contact(cid: str, revision: int, queue: str, *, retracted=False, handled=True, duration=60.0, second=0,
            emitted=0) -> tuple[bytes, dict]:
    record = {"contact_id": f"acme:{cid}:1", "revision": revision, "retracted": retracted, "queue": queue,
              "integration": "acme", "emitted_at": f"2026-01-01T10:00:{emitted:02d}.000Z"}
    if not retracted:
        record.update(group_id=None if queue == "Undefined_Queue" else f"g-{queue}", offered=True, handled=handled,
                      duration_seconds=duration, started_at=f"2026-01-01T09:{second:02d}:00.000Z",
                      resolved_at="2026-01-01T09:59:00.000Z")
    return contact_key("acme", queue), record


@st.composite
def histories(draw):
    """Contact records as the worker writes them: revisions rising, a move retracting under the old
    queue first; sometimes a record written twice, or re-emitted with the same revision later."""
    log = []
    for n in range(draw(st.integers(1, 5))):
        cid, revision, queue, emitted = f"c{n}", 0, None, 0
        for _ in range(draw(st.integers(1, 4))):
            new_queue = draw(st.sampled_from(QUEUES + (None,)))
            emitted += 1
            if new_queue is None:
                if queue is None:
                    continue
                revision += 1
                log.append(contact(cid, revision, queue, retracted=True, emitted=emitted))
                queue = None
                continue
            if queue is not None and queue != new_queue:
                revision += 1
                log.append(contact(cid, revision, queue, retracted=True, emitted=emitted))
            revision += 1
            queue = new_queue
            log.append(contact(cid, revision, queue, handled=draw(st.booleans()),
                               duration=draw(st.sampled_from([0.5, 60.0, 83.125])),
                               second=draw(st.integers(0, 40)), emitted=emitted))
            if draw(st.booleans()):
                log.append(log[-1])  # written twice
    # records of different lines interleave in any order; one line's records keep theirs
    lines = [delivery_line_key(key, record["contact_id"]) for key, record in log]
    cursor: dict = {}
    for line, record in zip(lines, log):
        cursor.setdefault(line, []).append(record)
    cursor = {line: iter(records) for line, records in cursor.items()}
    return [next(cursor[line]) for line in draw(st.permutations(lines))]


def sums(rows) -> Counter:
    total: Counter = Counter()
    for row in rows:
        key = (row.queue_identifier, row.queue_name, row.timestamp)
        total[key + ("offered",)] += row.offered
        total[key + ("handled",)] += row.handled
        total[key + ("duration",)] += row.duration_ms
    return Counter({k: v for k, v in total.items() if v})


def expected(log) -> Counter:
    final = {}
    for key, record in log:
        line = delivery_line_key(key, record["contact_id"])
        final.setdefault(line, []).append(record)
    rows = [row_of(r) for records in final.values() for r in final_revisions(records).values()]
    return sums(r for r in rows if r is not None)


class World:
    """The state topic, the committed offset and an injixo that honours Idempotency-Key."""

    def __init__(self, log) -> None:
        self.log, self.state, self.committed, self.accepted = log, [], 0, {}

    def post(self, batch: Batch) -> None:
        self.accepted.setdefault(batch.idempotency_key, batch.rows)

    def wfm_sums(self) -> Counter:
        return sums(row for rows in self.accepted.values() for row in rows)


def run_sink(world: World, draw, max_rows: int, crashes: bool = True) -> bool:
    """One sink run from the committed offset; returns False when it crashed part way."""
    ledger = Ledger(0)
    for key, value in world.state:
        ledger.restore(key, value)
    again, done = ledger.unfinished()
    for batch in done:
        world.state.append(batch.delivered()[-1])
    queue = list(again)
    offset = world.committed
    while True:
        crash_at = draw(st.sampled_from(["none"] * 6 + ["intent", "post", "lines", "commit"])) if crashes else "none"
        if not queue:
            step = draw(st.integers(1, 3))
            for i in range(offset, min(offset + step, len(world.log))):
                key, record = world.log[i]
                ledger.observe(i, key, record, "started")
            offset = min(offset + step, len(world.log))
            lines = ledger.settled("acme", now_ms=10**15, settle_ms=0)
            batch = ledger.take("acme", "cfg", lines, max_rows)
            if batch is None:
                if offset >= len(world.log):
                    point = ledger.commit_point()
                    world.committed = point if point is not None else world.committed
                    return True
                continue
            if crash_at == "intent":
                return False
            world.state.append(batch.intent())
        else:
            batch = queue.pop(0)
        if crash_at == "post":
            return False
        world.post(batch)
        if crash_at == "lines":
            world.state.extend(batch.delivered()[:draw(st.integers(0, len(batch.changes)))])
            return False
        world.state.extend(batch.delivered())
        ledger.complete(batch)
        if crash_at == "commit":
            return False
        point = ledger.commit_point()
        if point is not None:
            world.committed = point


@settings(max_examples=150, deadline=None)
@given(histories(), st.integers(1, 4), st.data())
def test_crashes_anywhere_leave_the_wfm_sums_equal_to_the_final_contacts(log, max_rows, data):
    world = World(log)
    for _ in range(5):
        if run_sink(world, data.draw, max_rows):
            break
    else:
        assert run_sink(world, data.draw, max_rows, crashes=False)
    assert run_sink(world, data.draw, max_rows, crashes=False)  # a restart once all is delivered posts nothing new
    assert world.wfm_sums() == expected(log)


@settings(max_examples=100, deadline=None)
@given(histories(), st.integers(1, 4))
def test_without_crashes_each_row_is_posted_once(log, max_rows):
    world = World(log)
    ledger = Ledger(0)
    posted = []
    for i, (key, record) in enumerate(log):
        ledger.observe(i, key, record, "started")
        batch = ledger.take("acme", "cfg", ledger.settled("acme", 10**15, 0), max_rows)
        while batch is not None:
            posted.append(batch.idempotency_key)
            world.post(batch)
            ledger.complete(batch)
            batch = ledger.take("acme", "cfg", ledger.settled("acme", 10**15, 0), max_rows)
    assert len(posted) == len(set(posted))
    assert world.wfm_sums() == expected(log)
    assert ledger.commit_point() == len(log) or not log


def test_a_revision_is_delivered_as_its_difference():
    before = row_of(contact("c1", 1, "Support", duration=60.0)[1])
    after = row_of(contact("c1", 2, "Support", duration=90.0)[1])
    assert difference(before, after) == [before.negated(), after]
    assert difference(before, None) == [before.negated()]
    assert difference(None, after) == [after]
    assert difference(after, after) == []


def test_the_queue_identifier_is_the_group_id_and_undefined_queue_its_own():
    assert row_of(contact("c1", 1, "Support")[1]).queue_identifier == "g-Support"
    assert row_of(contact("c1", 1, "Undefined_Queue")[1]).queue_identifier == "Undefined_Queue"
    unanswered = row_of(contact("c1", 1, "Support", handled=False)[1])
    assert (unanswered.offered, unanswered.handled, unanswered.duration_ms) == (1, 0, 0)
    assert row_of(contact("c1", 2, "Support", retracted=True)[1]) is None


def test_a_contact_waits_for_the_settle_time_and_a_newer_revision_restarts_it():
    ledger = Ledger(0)
    key, first = contact("c1", 1, "Support", emitted=0)
    ledger.observe(0, key, first, "started")
    emitted = 1767261600000  # 2026-01-01T10:00:00Z
    assert ledger.settled("acme", emitted + 59_999, 60_000) == []
    key, second = contact("c1", 2, "Support", emitted=30)
    ledger.observe(1, key, second, "started")
    assert ledger.settled("acme", emitted + 60_000, 60_000) == []
    assert len(ledger.settled("acme", emitted + 90_000, 60_000)) == 1
    assert ledger.commit_point() == 1  # the first record is superseded, the second not yet delivered


def test_an_unchanged_row_is_settled_without_a_request():
    ledger = Ledger(0)
    key, first = contact("c1", 1, "Support")
    ledger.observe(0, key, first, "started")
    batch = ledger.take("acme", "cfg", ledger.settled("acme", 10**15, 0), 10)
    ledger.complete(batch)
    key, again = contact("c1", 2, "Support", emitted=5)  # a revision that changes nothing injixo counts
    ledger.observe(1, key, again, "started")
    assert ledger.take("acme", "cfg", ledger.settled("acme", 10**15, 0), 10) is None
    assert ledger.commit_point() == 2 and ledger.backlog() == {}


def test_the_same_batch_has_the_same_idempotency_key_and_round_trips_its_intent():
    ledger = Ledger(3)
    key, record = contact("c1", 1, "Support")
    ledger.observe(7, key, record, "started")
    batch = ledger.take("acme", "cfg", ledger.settled("acme", 10**15, 0), 10)
    intent_key, value = batch.intent()
    again = Batch.from_intent(batch.id, value, 3)
    assert again == batch and again.idempotency_key == batch.idempotency_key
    assert Batch("acme", "cfg", 3, batch.changes).id == batch.id
    assert batch.body()["data"][0] == {"properties": {"offered": 1, "handled": 1, "duration": 60.0},
                                       "queueName": "Support", "queueIdentifier": "g-Support",
                                       "timestamp": "2026-01-01T09:00:00.000Z", "channel": "chats"}
    assert isinstance(batch.rows[0], Row)
