"""The Prometheus pieces every process shares: a registry of its own, gauges read at scrape time, the page.

prometheus_client's default registry is global, and a test process runs several ingresses
and workers at once; each metrics object here owns a CollectorRegistry instead. Series
named `*_created` (prometheus_client's per-series creation times) are switched off: no
dashboard reads them and they would double every counter on the page.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "CallbackGauge", "MetricSet", "Samples"]

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # the text format every Prometheus 2.x scrapes

Samples = Callable[[], Iterable[tuple[Mapping[str, str], float]]]

disable_created_metrics()


class CallbackGauge(Collector):
    """A gauge whose samples are read when Prometheus scrapes: ({label: value}, number) pairs.

    For figures another object already keeps (lag rows, open connections, integration
    status): copying them into a Gauge on every change would be a second copy to keep true.
    """

    def __init__(self, name: str, documentation: str, samples: Samples) -> None:
        self.name, self.documentation, self.samples = name, documentation, samples

    def describe(self):
        return [GaugeMetricFamily(self.name, self.documentation)]  # the name, without reading the callback

    def collect(self):
        rows = [(dict(labels), value) for labels, value in self.samples()]
        names = sorted(rows[0][0]) if rows else []
        family = GaugeMetricFamily(self.name, self.documentation, labels=names)
        for labels, value in rows:
            family.add_metric([str(labels[name]) for name in names], value)
        yield family


class MetricSet:
    """One process's series: its own registry, more collectors added, rendered as one page."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()

    def add(self, collector: Collector) -> Collector:
        self.registry.register(collector)
        return collector

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """One sample's value, 0 when it was never set: for tests and the CLI's summaries."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found
