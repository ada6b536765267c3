"""The worker's view of its own lag, and whether it is still making progress.

Measured from the broker every few seconds (connectors/lag.py), so the figures are the
ones an operator's `freshstream lag` shows. A partition that has lag but whose committed
offset has not moved for `stall_seconds` means the consumer silently stopped: /healthz fails.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka.errors import KafkaError

from connectors.lag import PartitionLag, measure_lag
from streams.settings import Settings

__all__ = ["LagMonitor"]

logger = logging.getLogger(__name__)


class LagMonitor:
    """Latest lag rows of one group on one topic, and a stall verdict."""

    def __init__(self, settings: Settings, group: str, topic: str, clock=time.monotonic) -> None:
        self.settings, self.group, self.topic, self.clock = settings, group, topic, clock
        self.rows: list[PartitionLag] = []
        self._progress: dict[int, tuple[int | None, float]] = {}  # partition → (committed, when it moved)
        self._task: asyncio.Task | None = None

    def observe(self, rows: list[PartitionLag]) -> None:
        """Record a measurement; a partition makes progress when caught up or its offset moves."""
        now = self.clock()
        self.rows = [r for r in rows if r.topic == self.topic]
        for row in self.rows:
            committed, since = self._progress.get(row.partition, (None, now))
            if row.lag == 0 or row.committed != committed:
                since = now
            self._progress[row.partition] = (row.committed, since)

    def stalled(self) -> list[int]:
        """Partitions with lag whose committed offset has not moved for stall_seconds."""
        now = self.clock()
        return sorted(r.partition for r in self.rows if r.lag > 0
                      and now - self._progress[r.partition][1] > self.settings.stall_seconds)

    def gauge(self, field: str):
        """A metrics callback yielding (labels, value) per partition."""
        def samples():
            for row in self.rows:
                yield {"topic": row.topic, "partition": str(row.partition)}, getattr(row, field)
        return samples

    async def run(self) -> None:
        while True:
            try:
                self.observe(await measure_lag(self.settings, [self.group], topics=[self.topic]))
            except (KafkaError, OSError, TimeoutError) as exc:
                logger.warning("lag measurement failed: %s", exc)
            await asyncio.sleep(self.settings.lag_check_seconds)

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="lag-monitor")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
