"""Test-side tools: read topics with an independent consumer, sign bodies, wait on conditions."""

from __future__ import annotations

import asyncio
import base64
import time

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from connectors.integrations.registry import IntegrationStore
from streams.settings import Settings

SECRETS: set[str] = set()  # every secret a test made; none may appear in any log line


def wait_until(condition, timeout: float = 10.0, what: str = "condition", interval: float = 0.02):
    """Poll until condition() is truthy; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


async def read_topic(settings: Settings, topic: str, count: int, timeout: float = 10.0) -> list:
    """The first `count` records of every partition of a topic, read with a plain consumer.

    Stops at `count` records or at the deadline, whichever comes first, and returns
    what it has: a test asserting on a count sees a shortfall as a failed assertion.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=100)
    await consumer.start()
    try:
        await consumer.topics()  # loads the partition metadata
        partitions = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or {0})]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(records) < count and asyncio.get_running_loop().time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


def values(records) -> list[dict]:
    return [orjson.loads(r.value) for r in records]


async def put_integration(settings: Settings, record) -> None:
    async with IntegrationStore(settings) as store:
        await store.put(record)


def public_pem(private_key) -> str:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def sign(private_key, body: bytes) -> str:
    """What Freshchat puts in X-Freshchat-Signature for this body."""
    signature = base64.b64encode(private_key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()
    SECRETS.add(signature)
    return signature
