"""`freshstream tail --final` against the embedded broker: revisions, retractions and a queue move,
written with a plain producer, folded into the contacts that exist, then followed live."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from connectors.kafka.topics import ensure_topic
from tests.contact_records import contact, key, retraction
from tests.processes import settings_env

pytestmark = pytest.mark.integration

# Each queue on its own partition, so that a moved contact's records arrive on two partitions.
PARTITION = {"Sales": 0, "Support": 1, "Billing": 2}
T0, T1, T2, T3, T5 = ("2024-05-06T08:00:00.000Z", "2024-05-06T09:00:00.000Z", "2024-05-06T09:20:00.000Z",
                      "2024-05-06T09:30:00.000Z", "2024-05-06T09:50:00.000Z")
LINE_TIMEOUT = 30.0


class Tail:
    """A `freshstream tail` process whose stdout lines are read on a thread, so waits have deadlines."""

    def __init__(self, settings, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        with open(log_path, "w") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "connectors.cli", "tail", *args],
                                            env=settings_env(settings), stdout=subprocess.PIPE, stderr=log, text=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def take(self, count: int) -> list[str]:
        """The next `count` lines; fails at the deadline or if the process ends first."""
        got = []
        for _ in range(count):
            try:
                line = self.lines.get(timeout=LINE_TIMEOUT)
            except queue.Empty:
                self.kill()
                raise AssertionError(f"no line {len(got) + 1} of {count} within {LINE_TIMEOUT} s: {got}; "
                                     f"{self.log_tail()}") from None
            assert line is not None, f"tail ended after {got}: {self.log_tail()}"
            got.append(line)
        return got

    def finish(self) -> str:
        """Wait for the exit (--max reached); returns any stdout printed after the lines taken."""
        assert self.process.wait(timeout=LINE_TIMEOUT) == 0, self.log_tail()
        rest = []
        while (line := self.lines.get(timeout=LINE_TIMEOUT)) is not None:
            rest.append(line)
        return "\n".join(rest)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of its stderr, without the Kafka client's DEBUG chatter."""
        own = [line for line in self.log_path.read_text(errors="replace").splitlines()
               if " DEBUG aiokafka" not in line]
        return f"stderr ({self.log_path}): " + "\n".join(own[-lines:])

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def produce(loop_thread, settings):
    """Write records to the contacts topic, each under its queue's key and partition; returns the values."""
    loop_thread.run(ensure_topic(settings, settings.contacts_topic, len(PARTITION)))

    async def start() -> AIOKafkaProducer:
        started = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all")
        await started.start()
        return started

    producer = loop_thread.run(start())

    def send(*records: dict) -> list[str]:
        async def write():
            for record in records:
                await producer.send_and_wait(settings.contacts_topic, orjson.dumps(record), key=key(record),
                                             partition=PARTITION[record["queue"]])
        loop_thread.run(write())
        return [orjson.dumps(r).decode() for r in records]

    yield send
    loop_thread.run(producer.stop())


@pytest.fixture
def tails(tmp_path):
    started: list[Tail] = []

    def start(settings, *args: str) -> Tail:
        started.append(Tail(settings, tmp_path / f"tail-{len(started)}.log", *args))
        return started[-1]

    yield start
    for tail in started:
        tail.kill()


def line(record: dict) -> str:
    return orjson.dumps(record).decode()


def test_final_prints_the_folded_set_then_only_records_that_raise_a_revision(settings, produce, tails):
    a2, d1, c3, e3 = (contact("a", 2, "Sales", T2), contact("d", 1, "Support", T0),
                      contact("c", 3, "Support", T3), contact("e", 3, "Sales", T5))
    produce(contact("a", 1, "Sales", T3), a2,                # A corrected: its resolved_at moves it up,
            contact("a", 1, "Sales", T5), a2,                # then a stale revision and a repeat
            contact("b", 1, "Sales", T1), retraction("b", 2, "Sales"),        # B does not exist
            contact("c", 1, "Sales", T3), c3, retraction("c", 2, "Sales"),    # C moved Sales → Support
            contact("e", 1, "Sales", T5), retraction("e", 2, "Sales"), e3,    # E retracted, then back
            d1)
    tail = tails(settings, "--final", "--from-beginning", "--max", "8")
    assert tail.take(4) == [line(d1), line(a2), line(c3), line(e3)]

    a3 = contact("a", 3, "Sales", T1)
    produce(a2, contact("a", 1, "Sales", T2), a3)
    assert tail.take(1) == [line(a3)], "a repeat or a stale revision was printed"
    d_gone = retraction("d", 2, "Support")
    produce(d_gone)
    assert tail.take(1) == [line(d_gone)], "a live consumer must learn of a retraction"
    d3 = contact("d", 3, "Sales", T0)
    produce(d3)
    assert tail.take(1) == [line(d3)]
    b3 = contact("b", 3, "Support", T1)
    produce(d_gone, b3)  # a crash repeats the retraction; B comes back in another queue
    assert tail.take(1) == [line(b3)], "a repeated retraction was printed"
    assert tail.finish() == ""


def test_final_with_queue_folds_that_queue_alone_so_a_moved_contact_counts_once(settings, produce, tails):
    a1, c3, d3 = contact("a", 1, "Sales", T2), contact("c", 3, "Support", T3), contact("d", 3, "Sales", T0)
    produce(a1, contact("c", 1, "Sales", T3), retraction("c", 2, "Sales"), c3,     # C moved Sales → Support
            contact("d", 1, "Support", T0), retraction("d", 2, "Support"), d3)     # D moved Support → Sales
    sales = tails(settings, "--final", "--from-beginning", "--queue", "Sales", "--max", "3")
    support = tails(settings, "--final", "--from-beginning", "--queue", "Support", "--max", "2")
    everything = tails(settings, "--final", "--from-beginning", "--integration", "acme", "--max", "4")
    assert sales.take(2) == [line(d3), line(a1)]
    assert support.take(1) == [line(c3)]
    assert everything.take(3) == [line(d3), line(a1), line(c3)]

    # Live, each queue's view learns what concerns it: the moved contact's retraction under
    # the old queue, its new revision under the new one.
    a_gone, a3 = retraction("a", 2, "Sales"), contact("a", 3, "Support", T2)
    produce(a_gone, a3)
    assert sales.take(1) == [line(a_gone)]
    assert support.take(1) == [line(a3)]
    assert everything.take(1) in ([line(a_gone)], [line(a3)])  # the two partitions race
    for tail in (sales, support, everything):
        assert tail.finish() == ""
