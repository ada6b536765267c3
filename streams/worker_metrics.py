"""The worker's Prometheus series."""

from __future__ import annotations

from connectors.metrics import Counter, Gauge, Histogram, Registry

__all__ = ["WorkerMetrics"]

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
