"""The ingress's Prometheus series."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from streams.metrics import CallbackGauge, MetricSet

__all__ = ["IngressMetrics"]

_PRODUCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)  # a produce is ms


class IngressMetrics(MetricSet):
    """Requests by integration and status, auth failures, DLQ records and produce latency."""

    def __init__(self, activity=None, guard=None) -> None:
        super().__init__()
        registry = self.registry
        self.requests = Counter("freshstream_ingress_requests_total", "Webhook requests by integration and HTTP status.",
                                ["integration", "status"], registry=registry)
        self.auth_failures = Counter("freshstream_ingress_auth_failures_total",
                                     "Requests refused with 401, by integration.", ["integration"], registry=registry)
        self.events = Counter("freshstream_ingress_events_total", "Events acknowledged by Kafka, by integration.",
                              ["integration"], registry=registry)
        self.dead_letters = Counter("freshstream_ingress_dead_letters_total",
                                    "Authenticated rejects written to the DLQ, by integration and error code.",
                                    ["integration", "error"], registry=registry)
        self.produce_failures = Counter("freshstream_ingress_produce_failures_total",
                                        "Requests answered 503 for want of a Kafka ack.", registry=registry)
        self.produce_seconds = Histogram("freshstream_ingress_produce_seconds",
                                         "Time from the first send to the last Kafka ack.",
                                         buckets=_PRODUCE_BUCKETS, registry=registry)
        if guard is not None:
            self.add(CallbackGauge("freshstream_ingress_connections", "Open client connections.",
                           lambda: [({}, len(guard.live))]))
            self.add(CallbackGauge("freshstream_ingress_connections_refused_total",
                           "Connections closed at once: FRESHSTREAM_INGRESS_MAX_CONNECTIONS were open.",
                           lambda: [({}, guard.refused)]))
            self.add(CallbackGauge("freshstream_ingress_connections_closed_idle_total",
                           "Connections closed after FRESHSTREAM_INGRESS_IDLE_TIMEOUT_SECONDS without a request.",
                           lambda: [({}, guard.closed_idle)]))
        if activity is not None:
            self.add(CallbackGauge("freshstream_ingress_last_accepted_timestamp_seconds",
                           "When this instance last answered 202 to an integration (Unix time).",
                           _per_integration(activity.last_accepted)))
            self.add(CallbackGauge("freshstream_ingress_last_reject_timestamp_seconds",
                           "When this instance last refused a request of an integration with a 4xx (Unix time).",
                           _per_integration(activity.last_rejected)))


def _per_integration(read):
    def samples():
        for integration, moment in sorted(read().items()):
            yield {"integration": integration}, moment
    return samples
