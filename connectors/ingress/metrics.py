"""The ingress's Prometheus series."""

from __future__ import annotations

from connectors.metrics import Counter, Gauge, Histogram, Registry

__all__ = ["IngressMetrics"]


class IngressMetrics(Registry):
    """Requests by integration and status, auth failures, DLQ records and produce latency."""

    def __init__(self, activity=None, guard=None) -> None:
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
        if guard is not None:
            self.add(Gauge("freshstream_ingress_connections", "Open client connections.",
                           lambda: [({}, len(guard.live))]))
            self.add(Gauge("freshstream_ingress_connections_refused_total",
                           "Connections closed at once: FRESHSTREAM_INGRESS_MAX_CONNECTIONS were open.",
                           lambda: [({}, guard.refused)]))
            self.add(Gauge("freshstream_ingress_connections_closed_idle_total",
                           "Connections closed after FRESHSTREAM_INGRESS_IDLE_TIMEOUT_SECONDS without a request.",
                           lambda: [({}, guard.closed_idle)]))
        if activity is not None:
            self.add(Gauge("freshstream_ingress_last_accepted_timestamp_seconds",
                           "When this instance last answered 202 to an integration (Unix time).",
                           _per_integration(activity.last_accepted)))
            self.add(Gauge("freshstream_ingress_last_reject_timestamp_seconds",
                           "When this instance last refused a request of an integration with a 4xx (Unix time).",
                           _per_integration(activity.last_rejected)))


def _per_integration(read):
    def samples():
        for integration, moment in sorted(read().items()):
            yield {"integration": integration}, moment
    return samples
