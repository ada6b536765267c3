"""Replay: rebuild the contacts resolved in a window from the raw topic, with fresh state.

It never joins the live worker's consumer group: it reads the raw topic with an
unassigned consumer up to the partition ends it saw when it started, applies the same
pure state machine (streams/chat.py) in memory, and compares what it rebuilt with what
the target topic already holds, by contact_id. Contact ids are deterministic, so a
second replay of the same window finds everything present and writes nothing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable

import orjson
from aiokafka import TopicPartition

from connectors.follower import TopicFollower
from connectors.kafka import ensure_topic, make_consumer, make_producer, true_ends
from streams.chat import ChatState, apply, expire
from streams.contact import UNDEFINED_QUEUE, build_contact, contact_key, queue_for
from streams.events import Skip, normalise_or_skip
from streams.group_names import GroupNames
from streams.settings import Settings

__all__ = ["ReplayWindow", "ReplayReport", "replay"]


@dataclass(frozen=True)
class ReplayWindow:
    """Contacts resolved in [since, until) (epoch ms), of one integration or all."""

    since: int
    until: int
    integration: str | None = None
    lookback_ms: int = 7 * 24 * 3600 * 1000



@dataclass
class ReplayReport:
    """What `freshstream replay` prints."""

    rebuilt: int = 0
    present: int = 0
    missing: int = 0
    differing: int = 0
    differing_ids: list[str] = field(default_factory=list)

    def counts(self) -> dict:
        return {"rebuilt": self.rebuilt, "present": self.present, "missing": self.missing,
                "differing": self.differing}


async def replay(settings: Settings, window: ReplayWindow, target: str, dry_run: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> ReplayReport:
    """Rebuild, compare with `target`, and write what is missing or differs (unless dry_run)."""
    names = await _group_names(settings)
    rebuilt = await _rebuild(settings, window, names, progress)
    existing = await _existing(settings, target, {c["contact_id"] for c in rebuilt})
    report, to_write = _compare(rebuilt, existing)
    if to_write and not dry_run:
        await ensure_topic(settings, target, settings.topic_partitions)
        await _write(settings, target, to_write)
    return report


async def _group_names(settings: Settings) -> GroupNames:
    names = GroupNames()
    follower = TopicFollower(settings, settings.groups_topic, names.apply)
    await follower.start()
    try:
        await follower.loaded.wait()
    finally:
        await follower.stop()
    return names


async def _rebuild(settings: Settings, window: ReplayWindow, names: GroupNames, progress) -> list[dict]:
    """Apply every raw record from since − lookback up to the ends seen at the start."""
    states: dict[str, ChatState] = {}
    watermarks: dict[int, int] = {}
    partition_of_chat: dict[str, int] = {}
    contacts: list[dict] = []
    expiry_ms = settings.chat_expiry_seconds * 1000
    consumer = make_consumer(settings, fetch_max_wait_ms=100, max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    try:
        partitions = await _partitions(consumer, settings.raw_topic)
        consumer.assign(partitions)
        ends = await true_ends(consumer, partitions)
        await consumer.seek_to_beginning(*partitions)
        total, done = sum(ends.values()), 0
        pending = {tp for tp in partitions if ends[tp] > 0}
        while pending:
            for tp, records in (await consumer.getmany(*pending, timeout_ms=500, max_records=5000)).items():
                for record in records:
                    if record.offset >= ends[tp]:
                        break
                    done += 1
                    if record.timestamp < window.since - window.lookback_ms:
                        continue
                    _apply_record(record, states, watermarks, partition_of_chat, contacts, names, expiry_ms, window)
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
            if progress:
                progress(done, total)
    finally:
        await consumer.stop()
    for chat, state in states.items():  # the live worker's expiry timer, at the final watermarks
        _, closed = expire(state, watermarks.get(partition_of_chat[chat], 0), expiry_ms)
        contacts += _contacts(chat, closed, names, window)
    return contacts


def _apply_record(record, states, watermarks, partition_of_chat, contacts, names, expiry_ms, window) -> None:
    try:
        envelope = orjson.loads(record.value)
    except orjson.JSONDecodeError:
        return
    event = normalise_or_skip(envelope)
    if isinstance(event, Skip):
        return
    chat = event.chat_key
    watermarks[record.partition] = max(watermarks.get(record.partition, event.at), event.at)
    partition_of_chat[chat] = record.partition
    state, closed, _ = apply(states.get(chat), event, expiry_ms)
    states[chat] = state
    if event.group_name and event.group_id:
        names.learn(event.integration, event.group_id, event.group_name)
    contacts += _contacts(chat, closed, names, window)


def _contacts(chat: str, closed, names: GroupNames, window: ReplayWindow) -> list[dict]:
    """Contacts of the cycles resolved inside the window; the others are not built at all."""
    integration, _, conversation = chat.partition(":")
    if window.integration is not None and integration != window.integration:
        return []
    return [build_contact(integration, conversation, cycle,
                          queue_for(cycle, names.for_integration(integration)) or UNDEFINED_QUEUE,
                          int(time.time() * 1000))
            for cycle in closed if window.since <= cycle.resolved_at < window.until]


async def _existing(settings: Settings, topic: str, wanted: set[str]) -> dict[str, dict]:
    """The target topic's copies of the rebuilt contacts, by contact_id (the last copy wins).

    Only those are kept: the target may hold weeks of contacts, the window a few hours'."""
    found: dict[str, dict] = {}
    consumer = make_consumer(settings, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topic)
        if not partitions:
            return found
        consumer.assign(partitions)
        ends = await true_ends(consumer, partitions)
        await consumer.seek_to_beginning(*partitions)
        pending = {tp for tp in partitions if ends[tp] > 0}
        while pending:
            for tp, records in (await consumer.getmany(*pending, timeout_ms=500)).items():
                for record in records:
                    contact = _decoded(record.value)
                    if contact is not None and contact.get("contact_id") in wanted:
                        found[contact["contact_id"]] = contact
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return found


def _decoded(value: bytes | None) -> dict | None:
    """A contact, or None for anything else a target topic may hold (it is then 'missing')."""
    try:
        doc = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _compare(rebuilt: list[dict], existing: dict[str, dict]) -> tuple[ReplayReport, list[dict]]:
    report, to_write = ReplayReport(rebuilt=len(rebuilt)), []
    for contact in sorted(rebuilt, key=lambda c: c["contact_id"]):
        old = existing.get(contact["contact_id"])
        if old is None:
            report.missing += 1
            to_write.append(contact)
        elif _same(old, contact):
            report.present += 1
        else:
            report.differing += 1
            report.differing_ids.append(contact["contact_id"])
            to_write.append(contact)
    return report, to_write


def _same(a: dict, b: dict) -> bool:
    return {k: v for k, v in a.items() if k != "emitted_at"} == {k: v for k, v in b.items() if k != "emitted_at"}


async def _write(settings: Settings, topic: str, contacts: list[dict]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        futures = [await producer.send(topic, orjson.dumps(c), key=contact_key(c["integration"], c["queue"]))
                   for c in sorted(contacts, key=lambda c: c["resolved_at"])]
        await asyncio.gather(*futures)  # every write acknowledged, or the replay fails loudly
    finally:
        await producer.stop()


async def _partitions(consumer, topic: str) -> list[TopicPartition]:
    await consumer.topics()
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]

