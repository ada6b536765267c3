"""The worker's Prometheus series, moved by the processor as it decides."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from prometheus_client import Counter, Gauge, Histogram

from streams.domain.chat import ChatState
from streams.domain.contact import UNDEFINED_QUEUE
from streams.domain.keys import split_chat_key
from streams.metrics import CallbackGauge, MetricSet

__all__ = ["WorkerMetrics", "OpenChatCensus"]

_DELAY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400)
# A timer call holds the processing lock for its whole duration: milliseconds matter (goal < 50 ms).
_TIMER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class WorkerMetrics(MetricSet):
    """Events by kind and verdict, skips by reason, contacts, revisions and retractions by queue, emission delay."""

    def __init__(self) -> None:
        super().__init__()
        registry = self.registry
        self.events = Counter(
            "freshstream_worker_events_total",
            "Chat events by kind and verdict (applied, revised, duplicate, late, after_close, after_terminal, "
            "future_time).",
            ["kind", "verdict"], registry=registry)
        self.skipped = Counter(
            "freshstream_worker_skipped_total", "Raw records that yield no chat event, by reason.",
            ["reason"], registry=registry)
        self.contacts = Counter(
            "freshstream_worker_contacts_total", "Contacts emitted for the first time, by queue and outcome.",
            ["queue", "outcome"], registry=registry)
        self.revisions = Counter(
            "freshstream_worker_revisions_total",
            "Later revisions of contacts emitted (a late event changed them), by queue.",
            ["queue"], registry=registry)
        self.retractions = Counter(
            "freshstream_worker_retractions_total",
            "Retractions emitted (a contact turned out not to exist, or moved to another queue), by queue.",
            ["queue"], registry=registry)
        self.resent = Counter(
            "freshstream_worker_resent_total",
            "Contacts whose last revision was re-sent after a restart or rebalance, because the worker "
            "that wrote it ahead may have stopped before sending it.",
            (), registry=registry)
        self.group_timeouts = Counter(
            "freshstream_worker_group_name_timeouts_total",
            "Contacts sent to Undefined_Queue because their group's name never arrived.",
            ["integration"], registry=registry)
        self.emission_delay = Histogram(
            "freshstream_worker_emission_delay_seconds",
            "Contact emitted_at minus resolved_at, by queue.",
            ["queue"], buckets=_DELAY_BUCKETS, registry=registry)
        self.open_chats = Gauge(
            "freshstream_worker_open_chats", "Chats with an open cycle, by queue (counted at each expiry scan).",
            ["queue"], registry=registry)
        self.oldest_open_chat = Gauge(
            "freshstream_worker_oldest_open_chat_seconds", "Now minus the start of the oldest open cycle.",
            (), registry=registry)
        self.intervals_written = Counter(
            "freshstream_worker_interval_records_total",
            "Interval records written to the intervals topic (first figures and restatements).",
            (), registry=registry)
        self.interval_skipped = Counter(
            "freshstream_worker_interval_skipped_total",
            "Contacts-topic records the interval statistics did not count, by reason (older_revision, "
            "too_old, no_time, not_a_contact, invalid_json).",
            ["reason"], registry=registry)
        self.timer_seconds = Histogram(
            "freshstream_worker_timer_seconds",
            "Duration of each timer call, by timer (release_pending, resend_unsent, expire_idle, "
            "forget_old_intervals), and of each chunk of an expiry scan (expire_chunk). release_pending, "
            "resend_unsent and each expire_chunk hold the processing lock throughout: their durations are the "
            "pauses they cause to raw processing; expire_idle is a whole scan, which lets go between chunks.",
            ["timer"], buckets=_TIMER_BUCKETS, registry=registry)
        self.timer_longest = Gauge(
            "freshstream_worker_timer_longest_seconds",
            "The longest single call of each timer since the worker started, by timer.",
            ["timer"], registry=registry)
        self._longest: dict[str, float] = {}
        self._verdicts: dict[tuple[str, str], object] = {}

    @contextmanager
    def timing(self, timer: str) -> Iterator[None]:
        """Time one call of a timer (wall clock, across its awaits) into timer_seconds and timer_longest."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.observe_timer(timer, time.perf_counter() - started)

    def observe_timer(self, timer: str, seconds: float) -> None:
        self.timer_seconds.labels(timer).observe(seconds)
        if seconds > self._longest.get(timer, -1.0):
            self._longest[timer] = seconds
            self.timer_longest.labels(timer).set(seconds)

    def watch_intervals(self, aggregator) -> None:
        """Offered, handled, AHT and service level per queue for the current and the previous
        interval (wall clock), from what this worker wrote since it started."""
        for name, field, text in _INTERVAL_GAUGES:
            self.add(CallbackGauge(name, text, _interval_samples(aggregator, field)))

    def count_event(self, kind: str, verdict: str) -> None:
        """One event by kind and verdict: the one series moved for every event, so its label
        children are kept (prometheus_client's labels() costs a lock and a tuple each time)."""
        child = self._verdicts.get((kind, verdict))
        if child is None:
            child = self._verdicts[(kind, verdict)] = self.events.labels(kind, verdict)
        child.inc()


_INTERVAL_GAUGES = [
    ("freshstream_interval_offered", "offered", "Contacts offered in the current or previous interval, per queue."),
    ("freshstream_interval_handled", "handled", "Contacts handled in the current or previous interval, per queue."),
    ("freshstream_interval_aht_seconds", "aht_seconds",
     "Average handle time of the interval's handled contacts, per queue (absent without handled contacts)."),
    ("freshstream_interval_service_level", "service_level",
     "Share of the interval's handled contacts answered within FRESHSTREAM_SLA_SECONDS, per queue."),
]


def _interval_samples(aggregator, field: str):
    def samples():
        for label, record in aggregator.recent(int(aggregator.clock() * 1000)):
            if record[field] is not None:
                yield {"integration": record["integration"], "queue": record["queue"], "interval": label}, \
                    record[field]
    return samples


class OpenChatCensus:
    """Open chats per queue and the oldest one's start, counted during the expiry scan."""

    def __init__(self) -> None:
        self.by_queue: dict[str, int] = {}
        self.oldest: int | None = None

    def count(self, chat: bytes, state: ChatState, names) -> None:
        head = state.head
        if not head.open:
            return
        integration = split_chat_key(chat)[0]
        queue = names.for_integration(integration).get(head.group_id) or head.group_name or UNDEFINED_QUEUE
        self.by_queue[queue] = self.by_queue.get(queue, 0) + 1
        if head.started_at is not None and (self.oldest is None or head.started_at < self.oldest):
            self.oldest = head.started_at

    def publish(self, metrics: WorkerMetrics, now_ms: int) -> None:
        metrics.open_chats.clear()
        for queue, n in self.by_queue.items():
            metrics.open_chats.labels(queue).set(n)
        metrics.oldest_open_chat.set(0 if self.oldest is None else max(0, now_ms - self.oldest) / 1000)
