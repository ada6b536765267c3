"""A small Prometheus text-format registry: counters and histograms with labels.

prometheus_client would add a dependency for the few series freshstream exposes,
and its global default registry fights with several apps in one test process.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict

__all__ = ["Counter", "Histogram", "Gauge", "Registry"]

Labels = tuple[tuple[str, str], ...]


def _fmt_labels(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    items = labels + extra
    if not items:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in items)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    """A monotonically increasing value per label set; name it with its `_total` suffix."""

    kind = "counter"

    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text
        self.values: dict[Labels, float] = defaultdict(float)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] += amount

    def get(self, **labels: str) -> float:
        return self.values.get(tuple(sorted(labels.items())), 0.0)

    def samples(self):
        for labels, value in sorted(self.values.items()):
            yield self.name, labels, value


class Gauge(Counter):
    """A value that goes up and down, or is read from a callback at scrape time."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, callback=None) -> None:
        super().__init__(name, help_text)
        self.callback = callback

    def set(self, value: float, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] = value

    def samples(self):
        if self.callback is not None:
            for labels, value in self.callback():
                yield self.name, tuple(sorted(labels.items())), value
            return
        for labels, value in sorted(self.values.items()):
            yield self.name, labels, value


class Histogram:
    """Cumulative buckets, a sum and a count per label set."""

    kind = "histogram"
    DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

    def __init__(self, name: str, help_text: str, buckets=DEFAULT_BUCKETS) -> None:
        self.name, self.help = name, help_text
        self.buckets = tuple(buckets)
        self.values: dict[Labels, list] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        state = self.values.setdefault(key, [[0] * len(self.buckets), 0.0, 0])
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.buckets):
            state[0][index] += 1
        state[1] += value
        state[2] += 1

    def samples(self):
        for labels, (counts, total, count) in sorted(self.values.items()):
            running = 0
            for bound, n in zip(self.buckets, counts):
                running += n
                yield self.name + "_bucket", labels + (("le", _num(bound)),), running
            yield self.name + "_bucket", labels + (("le", "+Inf"),), count
            yield self.name + "_sum", labels, total
            yield self.name + "_count", labels, count


class Registry:
    """The metrics of one process, rendered in the Prometheus text format."""

    def __init__(self) -> None:
        self.metrics: list = []

    def add(self, metric):
        self.metrics.append(metric)
        return metric

    def render(self) -> str:
        lines = []
        for metric in self.metrics:
            lines.append(f"# HELP {metric.name} {metric.help}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            for name, labels, value in metric.samples():
                lines.append(f"{name}{_fmt_labels(labels)} {_num(value)}")
        return "\n".join(lines) + "\n"
