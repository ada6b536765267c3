"""Faust's Kafka transport, corrected in two places: the fetch wait, and records lost at recovery's end.

The fetch wait. faust-streaming builds its consumer with fetch_max_wait_ms=1500 and no setting to
change it. Real Kafka answers a fetch as soon as a record arrives, so the wait costs
nothing there; the embedded broker (Tansu) holds the fetch for a good part of the wait
even when records arrive meanwhile. Measured on it: a record produced at a random moment
reached a consumer after 410 ms (median) with a 1.5 s wait, 6 ms with 20 ms. Through the
whole pipeline that was most of the 202 → contact latency (bench/soak.py). A short wait
costs an idle worker a few empty fetches a second.

Records lost at the end of table recovery (found under load: events answered 202 on
partitions that had never been committed never became contacts):
1. While tables recover, Faust "pauses" the raw partitions only by filtering: aiokafka
   keeps prefetching them.
2. Faust hands the consumer thread its live set of active partitions; at the end of
   recovery pause_partitions() empties that set in place while aiokafka's
   fetched_records(partitions) waits on it.
3. aiokafka reads an empty set as "every partition": it returns every buffered record and
   moves its positions past them; Faust's getmany then drops them, silently, as records of
   partitions that are not active.
4. The seek back to committed offsets heals partitions with a committed offset; aiokafka
   leaves a partition never committed where it was, past the dropped records.
So the thread fetches with a copy of the set (none if it is empty), and after the seek to
committed offsets a partition without a commit is sent to its beginning, as
consumer_auto_offset_reset="earliest" promises. Re-reading there is what at-least-once
delivery already allows; the processor's duplicate rules make it harmless.
"""

from __future__ import annotations

import asyncio

import faust
from faust.transport.drivers import aiokafka as driver

__all__ = ["App"]

_IDLE_FETCH = 0.05  # seconds an empty fetch waits when Faust gives no timeout


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its fetcher; the consumer is not started yet.
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms
        return consumer

    async def _fetch_records(self, consumer, active_partitions, timeout=None, max_records=None):
        """Fetch for a copy of the active partitions, and for none when none are active (module docstring)."""
        active = set(active_partitions or ())
        if not active:
            await asyncio.sleep(timeout or _IDLE_FETCH)  # as an empty fetch would wait: no busy loop while paused
            return {}
        return await super()._fetch_records(consumer, active, timeout=timeout, max_records=max_records)


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self):
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def seek_to_committed(self):
        """Seek to committed offsets, and a partition never committed to its beginning (module docstring)."""
        committed = await super().seek_to_committed()
        fresh = [tp for tp, offset in committed.items() if not offset and not self._is_changelog_tp(tp)]
        if fresh:
            await self._thread.seek_to_beginning(*fresh)
        return committed


class _Transport(driver.Transport):
    Consumer = _Consumer


class App(faust.App):
    """faust.App whose worker consumer waits at most `fetch_max_wait_ms` for a fetch."""

    def __init__(self, *args, fetch_max_wait_ms: int = 1500, **kwargs) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self):
        return _Transport(self.conf.broker_consumer, self)
