"""Kafka clients configured from settings, and topic creation with configs set up front."""

from __future__ import annotations

import asyncio
import logging
import ssl

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from streams.settings import Settings, SettingsError

__all__ = ["client_options", "make_producer", "make_consumer", "ensure_topics",
           "topic_specs", "wait_for_broker", "partition_count", "true_ends", "ensure_topic"]

logger = logging.getLogger(__name__)


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def client_options(settings: Settings) -> dict:
    """Connection options shared by every aiokafka client: bootstrap, TLS and SASL."""
    protocol, mechanism = _security(settings)
    opts = {"bootstrap_servers": settings.bootstrap, "security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        opts["ssl_context"] = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    if protocol.startswith("SASL"):
        opts.update(sasl_mechanism=mechanism, sasl_plain_username=settings.kafka_sasl_username,
                    sasl_plain_password=settings.kafka_sasl_password)
    return opts


def faust_credentials(settings: Settings):
    """The same TLS and SASL settings in the form Faust's broker_credentials takes (None: plaintext)."""
    import faust

    protocol, mechanism = _security(settings)
    context = (ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
               if protocol in ("SSL", "SASL_SSL") else None)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(username=settings.kafka_sasl_username, password=settings.kafka_sasl_password,
                                     ssl_context=context, mechanism=mechanism)
    return None


def _security(settings: Settings) -> tuple[str, str]:
    protocol = settings.kafka_security_protocol.upper()
    mechanism = (settings.kafka_sasl_mechanism or "PLAIN").upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise SettingsError(f"FRESHSTREAM_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol!r}: "
                            f"use one of {', '.join(SECURITY_PROTOCOLS)}")
    if protocol.startswith("SASL") and mechanism not in SASL_MECHANISMS:
        raise SettingsError(f"FRESHSTREAM_KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism!r}: "
                            f"use one of {', '.join(SASL_MECHANISMS)}")
    return protocol, mechanism


def make_producer(settings: Settings, **overrides) -> AIOKafkaProducer:
    """A producer that waits for every in-sync replica (acks=all)."""
    opts = client_options(settings)
    opts.update(acks="all", linger_ms=1, max_request_size=settings.max_body_bytes + 65536,
                request_timeout_ms=int(settings.produce_timeout * 1000),
                retry_backoff_ms=200)
    opts.update(overrides)
    return AIOKafkaProducer(**opts)


def make_consumer(settings: Settings, **overrides) -> AIOKafkaConsumer:
    """A consumer with freshstream's defaults; callers assign or subscribe."""
    opts = client_options(settings)
    opts.update(enable_auto_commit=False, auto_offset_reset="earliest")
    opts.update(overrides)
    return AIOKafkaConsumer(**opts)


def topic_specs(settings: Settings) -> list[NewTopic]:
    """Every topic with its configs set at creation (the embedded broker never alters them)."""
    n = settings.topic_partitions
    compact = {"cleanup.policy": "compact"}
    return [
        NewTopic(settings.raw_topic, n, 1, topic_configs={"retention.ms": str(settings.raw_retention_ms)}),
        NewTopic(settings.dlq_topic, n, 1, topic_configs={"retention.ms": str(settings.raw_retention_ms)}),
        NewTopic(settings.contacts_topic, n, 1),
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


async def wait_for_broker(settings: Settings, timeout: float) -> None:
    """Return once the broker answers a metadata request; raise TimeoutError otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=2000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaError, OSError):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"no Kafka broker answered at {settings.bootstrap}") from None
            await asyncio.sleep(0.05)
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
            raise TimeoutError(f"topic {topic} does not exist on {settings.bootstrap}")
        return len(partitions)
    finally:
        await consumer.stop()


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
