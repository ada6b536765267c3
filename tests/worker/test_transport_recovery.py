"""The two corrections of streams/worker/transport.py that keep records dropped at recovery's end from being lost."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace

from aiokafka import TopicPartition

from streams.worker.transport import _Consumer, _ConsumerThread


class Fetcher:
    """aiokafka's fetcher as _fetch_records uses it; `pause` empties the caller's set mid-fetch,
    as Faust's pause_partitions() does at the end of table recovery."""

    _closed = False

    def __init__(self, pause=None) -> None:
        self.asked: list[set] = []
        self.pause = pause
        self._subscriptions = SimpleNamespace(fetch_context=contextlib.nullcontext)

    async def fetched_records(self, partitions, timeout=None, max_records=None):
        if self.pause:
            self.pause()
        await asyncio.sleep(0)
        self.asked.append(set(partitions))
        return {}


def thread() -> _ConsumerThread:
    fetching = object.__new__(_ConsumerThread)  # no Faust app needed: only the fetch path runs
    fetching.consumer = SimpleNamespace(flow_active=True)
    return fetching


def test_a_fetch_asks_for_the_partitions_active_when_it_began_even_if_the_set_is_emptied_meanwhile():
    raw = {TopicPartition("raw", 4), TopicPartition("raw", 5)}
    fetcher = Fetcher(pause=raw.clear)
    consumer = SimpleNamespace(_fetcher=fetcher, _closed=False)
    asyncio.run(thread()._fetch_records(consumer, raw, timeout=0.01))
    assert fetcher.asked == [{TopicPartition("raw", 4), TopicPartition("raw", 5)}]


def test_no_active_partition_fetches_nothing_instead_of_every_partition():
    fetcher = Fetcher()
    consumer = SimpleNamespace(_fetcher=fetcher, _closed=False)
    assert asyncio.run(thread()._fetch_records(consumer, set(), timeout=0.01)) == {}
    assert fetcher.asked == [], "aiokafka reads an empty set as every partition"


def test_a_partition_never_committed_is_sent_to_its_beginning_after_the_seek_to_committed():
    sought = []
    consumer = object.__new__(_Consumer)
    committed = {TopicPartition("raw", 0): 17, TopicPartition("raw", 4): None, TopicPartition("raw", 5): 0,
                 TopicPartition("w-chats-changelog", 4): None}

    async def seek_to_committed():
        return committed

    async def seek_to_beginning(*partitions):
        sought.extend(partitions)

    consumer._thread = SimpleNamespace(seek_to_committed=seek_to_committed, seek_to_beginning=seek_to_beginning)
    consumer._is_changelog_tp = lambda tp: tp.topic.endswith("-changelog")
    assert asyncio.run(consumer.seek_to_committed()) == committed
    assert set(sought) == {TopicPartition("raw", 4), TopicPartition("raw", 5)}
