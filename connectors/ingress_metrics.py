"""The ingress's Prometheus series."""

from __future__ import annotations

from connectors.metrics import Counter, Histogram, Registry

__all__ = ["IngressMetrics"]


class IngressMetrics(Registry):
    """Requests by integration and status, auth failures, DLQ records and produce latency."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = self.add(Counter(
            "freshstream_ingress_requests_total", "Webhook requests by integration and HTTP status."))
        self.auth_failures = self.add(Counter(
            "freshstream_ingress_auth_failures_total", "Requests refused with 401, by integration."))
        self.events = self.add(Counter(
            "freshstream_ingress_events_total", "Events acknowledged by Kafka, by integration."))
        self.dead_letters = self.add(Counter(
            "freshstream_ingress_dead_letters_total", "Authenticated rejects written to the DLQ."))
        self.produce_failures = self.add(Counter(
            "freshstream_ingress_produce_failures_total", "Requests answered 503 for want of a Kafka ack."))
        self.produce_seconds = self.add(Histogram(
            "freshstream_ingress_produce_seconds", "Time from the first send to the last Kafka ack."))
