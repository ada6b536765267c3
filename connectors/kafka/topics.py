"""Topics: created with their configs set up front, counted, and their true ends found."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from connectors.kafka.clients import bootstrap_hosts, client_options, make_consumer
from streams.errors import BrokerError, os_reason
from streams.settings import ENV_PREFIX, Settings

__all__ = ["ensure_topics", "ensure_topic", "topic_specs", "wait_for_broker", "partition_count", "true_ends",
           "missing_topic", "topic_names"]

logger = logging.getLogger(__name__)


def topic_specs(settings: Settings) -> list[NewTopic]:
    """Every topic with its configs set at creation (the embedded broker never alters them)."""
    n = settings.topic_partitions
    compact = {"cleanup.policy": "compact"}
    return [
        NewTopic(settings.raw_topic, n, 1, topic_configs={"retention.ms": str(settings.raw_retention_ms)}),
        NewTopic(settings.dlq_topic, n, 1, topic_configs={"retention.ms": str(settings.raw_retention_ms)}),
        NewTopic(settings.contacts_topic, n, 1),
        NewTopic(settings.intervals_topic, n, 1, topic_configs=compact),
        NewTopic(settings.delivery_state_topic, n, 1, topic_configs=compact),
        NewTopic(settings.groups_topic, 1, 1, topic_configs=compact),
        NewTopic(settings.integrations_topic, 1, 1, topic_configs=compact),
        NewTopic(settings.health_topic, 1, 1, topic_configs=compact),
    ]


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the missing topics; returns the names created."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topic_specs(settings) if t.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another process won the race
            logger.info("created topics %s", [t.name for t in missing])
        return [t.name for t in missing]
    finally:
        await admin.close()


async def ensure_topic(settings: Settings, name: str, partitions: int) -> bool:
    """Create one topic (e.g. a replay target) if it is missing; True when it was created."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        if name in set(await admin.list_topics()):
            return False
        try:
            await admin.create_topics([NewTopic(name, partitions, 1)])
        except TopicAlreadyExistsError:
            return False
        logger.info("created topic %s", name)
        return True
    finally:
        await admin.close()


async def topic_names(settings: Settings) -> set[str]:
    """Every topic on the broker, for verbs that must refuse a misspelt name before writing to it."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def wait_for_broker(settings: Settings, timeout: float) -> None:
    """Return once the broker answers a metadata request; raise BrokerError otherwise.

    A TCP connect comes first: while nothing listens, aiokafka would log an ERROR for every
    attempt, burying the one line that says what to do under dozens that do not.
    """
    client_options(settings)  # a malformed setting is the user's to fix, not a reason to wait
    hosts = bootstrap_hosts(settings)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        reason = await _unreachable(hosts) or await _no_metadata(settings)
        if reason is None:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise BrokerError(f"no Kafka broker answered at {settings.bootstrap} ({reason}): start one with "
                              "'freshstream broker' or 'freshstream dev', or set FRESHSTREAM_KAFKA_BOOTSTRAP "
                              "to a running Kafka")
        await asyncio.sleep(0.05)


async def _unreachable(hosts: list[tuple[str, int]]) -> str | None:
    """None once one bootstrap address accepts a TCP connection, else the last failure."""
    reason = None
    for host, port in hosts:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
        except OSError as exc:  # TimeoutError included
            reason = os_reason(exc)
            continue
        writer.close()
        return None
    return reason


async def _no_metadata(settings: Settings) -> str | None:
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=2000)
    try:
        await admin.start()
        await admin.list_topics()
        return None
    except (KafkaError, OSError) as exc:
        return str(exc) or type(exc).__name__
    finally:
        await admin.close()


async def partition_count(settings: Settings, topic: str) -> int:
    """How many partitions a topic has (the worker's tables must match the raw topic)."""
    consumer = make_consumer(settings)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise missing_topic(settings, topic)
        return len(partitions)
    finally:
        await consumer.stop()


def missing_topic(settings: Settings, topic: str) -> BrokerError:
    """The error for a topic that is not there: most often a misspelt FRESHSTREAM_*_TOPIC, so it names it."""
    names = [ENV_PREFIX + f.name.upper() for f in dataclasses.fields(settings)
             if f.name.endswith("_topic") and getattr(settings, f.name) == topic]
    hint = (f"check {' / '.join(names)}, or start 'freshstream worker' or 'freshstream ingress' once, "
            "which create freshstream's topics") if names else "check its name"
    return BrokerError(f"topic {topic} does not exist on {settings.bootstrap}: {hint}")


async def true_ends(consumer, partitions: list, timeout: float = 10.0) -> dict:
    """Partition ends from fetch high watermarks (ListOffsets can lag on the embedded broker).

    Moves the consumer's positions: callers seek where they want afterwards.
    """
    listed = await consumer.end_offsets(partitions)
    for tp in partitions:
        consumer.seek(tp, max(0, listed[tp] - 1))
    ends: dict = {}
    deadline = asyncio.get_running_loop().time() + timeout
    while len(ends) < len(partitions):
        await consumer.getmany(*[tp for tp in partitions if tp not in ends], timeout_ms=100, max_records=1)
        for tp in partitions:
            if tp not in ends and consumer.highwater(tp) is not None:
                ends[tp] = consumer.highwater(tp)
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the broker returned no high watermark")
    return ends
