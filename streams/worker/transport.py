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
from faust.transport.consumer import ack_lock
from faust.transport.drivers import aiokafka as driver
from mode.utils.futures import notify

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

    async def _drain_messages(self, fetcher) -> None:
        """Hand each fetch of the raw topic to the app's feed whole (module docstring); every other
        record (changelogs while tables recover) takes Faust's own path, one message at a time."""
        feed = getattr(self.app, "raw_feed", None)
        if feed is None:
            return await super()._drain_messages(fetcher)
        consumer_should_stop, fetcher_should_stop = self._stopped.is_set, fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                records, active = await self._wait_next_records(feed.fetch_wait_seconds)
                if records is None or self.should_stop:
                    continue
                if not self.flow_active:  # a rebalance began: Faust seeks back to the committed offsets
                    try:
                        await self.perform_seek()
                    except Exception as exc:  # noqa: BLE001 - as Faust's getmany: logged, the next fetch retries
                        self.log.warning(f"exception performing seek when flow not active {exc}")
                    continue
                raw = {}
                for tp, batch in records.items():
                    if active is not None and tp not in active and tp not in self._buffered_partitions:
                        continue
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    if tp.topic == feed.topic:
                        kept = await self._unread(tp, batch)
                        if kept:
                            raw[tp] = kept
                    else:
                        await self._one_by_one(tp, batch)
                await feed.take(self, raw)
                if self._commit_every is not None and self._n_acked >= self._commit_every:
                    self._n_acked = 0
                    await self.commit()
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    async def _unread(self, tp, batch: list) -> list:
        """The records at or past the read offset, with gaps in their offsets recorded as Faust does
        (a gap is committable: compaction or transaction markers leave them)."""
        read = self._read_offset[tp]
        if read is not None and batch[0].offset < read:
            batch = [record for record in batch if record.offset >= read]
            if not batch:
                return batch
        if read and batch[0].offset - read > 1:
            await self._add_gap(tp, read + 1, batch[0].offset)
        if batch[-1].offset - batch[0].offset + 1 != len(batch):
            for before, record in zip(batch, batch[1:]):
                if record.offset - before.offset > 1:
                    await self._add_gap(tp, before.offset + 1, record.offset)
        self._read_offset[tp] = batch[-1].offset
        return batch

    async def _one_by_one(self, tp, batch: list) -> None:
        for record in batch:
            read = self._read_offset[tp]
            if read is not None and record.offset < read:
                continue
            if read and record.offset - read > 1 and self.app.topics.acks_enabled_for(tp.topic):
                await self._add_gap(tp, read + 1, record.offset)
            await self.wait_first(self.callback(self._to_message(tp, record)), self.suspend_flow.wait())
            self._read_offset[tp] = record.offset

    def ack_offsets(self, tp, offsets: list[int]) -> None:
        """Acknowledge a fetch's records at once: what Faust's ack() does per message, without the
        message objects the feed never made."""
        with ack_lock:
            committed = self._committed_offset[tp]
            if committed is not None:
                offsets = [offset for offset in offsets if offset >= committed]
            index = self._acked_index[tp]
            fresh = [offset for offset in offsets if offset not in index]
            index.update(fresh)
            self._acked[tp].extend(fresh)
            self._n_acked += len(fresh)
            notify(self._waiting_for_ack)

    async def wait_empty(self) -> None:
        """A rebalance or a stop waits for the feed's open group to be written and acknowledged too."""
        feed = getattr(self.app, "raw_feed", None)
        if feed is not None:
            await feed.drain(self)
        await super().wait_empty()

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
