"""The worker's Prometheus series."""

from __future__ import annotations

from connectors.metrics import Counter, Gauge, Histogram, Registry
from streams.domain.chat import ChatState
from streams.domain.contact import UNDEFINED_QUEUE
from streams.domain.keys import split_chat_key

__all__ = ["WorkerMetrics", "OpenChatCensus"]

_DELAY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400)


class WorkerMetrics(Registry):
    """Events by kind and verdict, skips by reason, contacts, revisions and retractions by queue, emission delay."""

    def __init__(self) -> None:
        super().__init__()
        self.events = self.add(Counter(
            "freshstream_worker_events_total",
            "Chat events by kind and verdict (applied, revised, duplicate, late, after_close, after_terminal, "
            "future_time)."))
        self.skipped = self.add(Counter(
            "freshstream_worker_skipped_total", "Raw records that yield no chat event, by reason."))
        self.contacts = self.add(Counter(
            "freshstream_worker_contacts_total", "Contacts emitted for the first time, by queue and outcome."))
        self.revisions = self.add(Counter(
            "freshstream_worker_revisions_total",
            "Later revisions of contacts emitted (a late event changed them), by queue."))
        self.retractions = self.add(Counter(
            "freshstream_worker_retractions_total",
            "Retractions emitted (a contact turned out not to exist, or moved to another queue), by queue."))
        self.resent = self.add(Counter(
            "freshstream_worker_resent_total",
            "Contacts whose last revision was re-sent after a restart or rebalance, because the worker "
            "that wrote it ahead may have stopped before sending it."))
        self.group_timeouts = self.add(Counter(
            "freshstream_worker_group_name_timeouts_total",
            "Contacts sent to Undefined_Queue because their group's name never arrived."))
        self.emission_delay = self.add(Histogram(
            "freshstream_worker_emission_delay_seconds",
            "Contact emitted_at minus resolved_at, by queue.", buckets=_DELAY_BUCKETS))
        self.open_chats = self.add(Gauge(
            "freshstream_worker_open_chats", "Chats with an open cycle, by queue (counted at each expiry scan)."))
        self.oldest_open_chat = self.add(Gauge(
            "freshstream_worker_oldest_open_chat_seconds", "Now minus the start of the oldest open cycle."))


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
        metrics.open_chats.values.clear()
        for queue, n in self.by_queue.items():
            metrics.open_chats.set(n, queue=queue)
        metrics.oldest_open_chat.set(0 if self.oldest is None else max(0, now_ms - self.oldest) / 1000)
