"""Stall detection: lag without progress for stall_seconds, and nothing else, is unhealthy."""

from __future__ import annotations

from connectors.kafka.lag import PartitionLag
from connectors.kafka.lag import LagMonitor
from streams.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def row(partition, committed, lag):
    return PartitionLag("g", "raw", partition, committed, committed + lag, lag, float(lag))


def test_lag_without_progress_stalls_after_the_configured_time():
    clock = Clock()
    monitor = LagMonitor(Settings(stall_seconds=10), "g", "raw", clock=clock)
    monitor.observe([row(0, 5, 3), row(1, 7, 0)])
    clock.now = 9
    monitor.observe([row(0, 5, 4), row(1, 7, 0)])
    assert monitor.stalled() == []
    clock.now = 11
    monitor.observe([row(0, 5, 6), row(1, 7, 0)])
    assert monitor.stalled() == [0]
    clock.now = 12
    monitor.observe([row(0, 6, 5), row(1, 7, 0)])
    assert monitor.stalled() == []


def test_caught_up_partitions_never_stall_and_other_topics_are_ignored():
    clock = Clock()
    monitor = LagMonitor(Settings(stall_seconds=1), "g", "raw", clock=clock)
    monitor.observe([row(0, 5, 0), PartitionLag("g", "other", 0, 1, 9, 8, 3.0)])
    clock.now = 100
    monitor.observe([row(0, 5, 0)])
    assert monitor.stalled() == [] and [r.topic for r in monitor.rows] == ["raw"]
    assert list(monitor.gauge("lag")()) == [({"topic": "raw", "partition": "0"}, 0)]
