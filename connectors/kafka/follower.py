"""Following a compacted topic into memory: the pattern behind every process-local global table.

Reads every partition from the beginning, then keeps up; `loaded` is set once the
reader has reached the partition ends it saw in fetch responses (high watermarks,
not ListOffsets, which the embedded broker answers wrongly).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from connectors.kafka.clients import make_consumer
from connectors.service import Service
from streams.errors import BrokerError
from streams.settings import Settings

__all__ = ["TopicFollower", "read_once"]

logger = logging.getLogger(__name__)


class TopicFollower(Service):
    """Calls `apply(key, value)` for every record of a topic, from the beginning, forever.

    Broker errors are retried here; anything else (an `apply` that raises) crashes the
    service, which mode logs with its traceback.
    """

    def __init__(self, settings: Settings, topic: str, apply: Callable[[bytes | None, bytes | None], None],
                 loaded_level: int = logging.INFO):
        """`loaded_level`: a service's log wants "loaded"; a one-shot verb's terminal does not."""
        super().__init__()
        self._settings, self.topic, self._apply, self._loaded_level = settings, topic, apply, loaded_level
        self.loaded = asyncio.Event()

    def _repr_name(self) -> str:  # mode's log lines name the service: say which topic crashed
        return f"TopicFollower: {self.topic}"

    @Service.task
    async def _follow(self) -> None:
        while True:
            consumer = make_consumer(self._settings, fetch_max_wait_ms=200)
            try:
                await consumer.start()
                partitions = await self._partitions(consumer)
                consumer.assign(partitions)
                await consumer.seek_to_beginning(*partitions)
                await self._consume(consumer, partitions)
            except KafkaError as exc:
                logger.warning("following %s failed (%s); retrying", self.topic, exc)
                await asyncio.sleep(1)
            finally:
                await consumer.stop()

    async def _partitions(self, consumer) -> list[TopicPartition]:
        await consumer.topics()
        numbers = consumer.partitions_for_topic(self.topic) or {0}
        return [TopicPartition(self.topic, p) for p in sorted(numbers)]

    async def _consume(self, consumer, partitions: list[TopicPartition]) -> None:
        while True:
            batches = await consumer.getmany(*partitions, timeout_ms=500)
            for records in batches.values():
                for record in records:
                    self._apply(record.key, record.value)
            if not self.loaded.is_set() and await self._caught_up(consumer, partitions):
                logger.log(self._loaded_level, "%s loaded", self.topic)
                self.loaded.set()

    @staticmethod
    async def _caught_up(consumer, partitions) -> bool:
        for tp in partitions:
            end = consumer.highwater(tp)
            if end is None or await consumer.position(tp) < end:
                return False
        return True


async def read_once(settings: Settings, topic: str, apply: Callable[[bytes | None, bytes | None], None],
                    timeout: float = 15.0) -> None:
    """Apply every record of a topic up to its end, then stop: for one-shot commands."""
    follower = TopicFollower(settings, topic, apply, loaded_level=logging.DEBUG)
    await follower.start()
    try:
        await asyncio.wait_for(follower.loaded.wait(), timeout)
    except TimeoutError:  # the follower retries forever; a command must give up and say so
        raise BrokerError(f"topic {topic} could not be read to its end from {settings.bootstrap} within "
                          f"{timeout:.0f} s: check that the broker is healthy and the topic exists") from None
    finally:
        await follower.stop()
