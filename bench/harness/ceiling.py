"""The ceiling of the worker's throughput: a plain aiokafka loop doing the least a worker must do.

It reads the pre-loaded raw topic, orjson-decodes every envelope, folds a small dict per
chat and produces one JSON contact per resolution, awaiting the acks; timed from the first
record read to the last contact acknowledged. The parent starts it with `run_ceiling`,
as a child on the subject CPU, like the workers:

    python -m harness.ceiling SPEC_JSON    (working directory bench/; it writes its figures to spec["result"])
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
from aiokafka import TopicPartition

from connectors.kafka.clients import make_consumer, make_producer
from harness import BENCH
from harness.load import GROUPS, INTEGRATION
from harness.processes import BenchError, Machine, bench_env, tail
from harness.topics import create_topic
from streams.domain.times import format_time
from streams.settings import Settings

__all__ = ["run_ceiling"]


def main(argv: list[str]) -> int:
    """`python -m harness.ceiling SPEC_JSON`: run the loop, write its figures."""
    spec = json.loads(argv[0])
    result = asyncio.run(_ceiling(spec))
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


async def _ceiling(spec: dict) -> dict:
    """The plain loop: read, decode, a small dict per chat, one contact per resolution."""
    settings = Settings(kafka_bootstrap=spec["bootstrap"])
    consumer, producer = make_consumer(settings, fetch_max_wait_ms=100), make_producer(settings)
    await consumer.start()
    await producer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(spec["raw"], p) for p in sorted(consumer.partitions_for_topic(spec["raw"]))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        return await _ceiling_loop(consumer, producer, spec)
    finally:
        await producer.stop()
        await consumer.stop()


async def _ceiling_loop(consumer, producer, spec: dict) -> dict:
    chats: dict[bytes, dict] = {}
    pending, events, contacts, first = [], 0, 0, None
    deadline = time.monotonic() + spec["timeout"]
    while events < spec["events"]:
        batches = await consumer.getmany(timeout_ms=500)
        if first is None and batches:
            first = time.perf_counter()
        for records in batches.values():
            for record in records:
                events += 1
                contact = _ceiling_apply(chats, record.key, orjson.loads(record.value)["payload"])
                if contact is not None:
                    key, value = contact
                    pending.append(await producer.send(spec["contacts"], value, key=key))
                    contacts += 1
        if len(pending) >= 5000:
            await asyncio.gather(*pending)
            pending.clear()
        if time.monotonic() > deadline:
            raise BenchError(f"the ceiling loop read only {events:,} of {spec['events']:,} events")
    await asyncio.gather(*pending)
    return {"events": events, "contacts": contacts, "seconds": time.perf_counter() - first}


def _ceiling_apply(chats: dict, key: bytes, payload: dict) -> tuple[bytes, bytes] | None:
    """Fold one webhook into its chat's dict; the contact (key, value) on a resolution."""
    at = payload["action_time"]
    state = chats.get(key)
    if state is None:
        state = chats[key] = {"first": at, "last": at, "group": None, "user": 0, "agent": 0, "bot": 0,
                              "private": 0}
    state["first"], state["last"] = min(state["first"], at), max(state["last"], at)
    action, data = payload["action"], payload["data"]
    if action == "message_create":
        message = data["message"]
        state["private" if message["message_type"] == "private" else message["actor_type"]] += 1
    elif action == "conversation_assignment":
        state["group"] = data["assignment"]["to_group_id"]
    elif action == "conversation_resolution":
        queue = GROUPS.get(state["group"], "Undefined_Queue")
        contact = {"contact_id": key.decode() + ":1", "queue": queue, "started_at": state["first"],
                   "resolved_at": at, "messages": {k: state[k] for k in ("user", "agent", "bot", "private")},
                   "emitted_at": format_time(datetime.now(timezone.utc))}
        return f"{INTEGRATION}/{queue}".encode(), orjson.dumps(contact)
    return None


async def run_ceiling(machine: Machine, settings: Settings, events: int, chats: int) -> dict:
    """The ceiling loop in a child process on the subject CPU; its figures."""
    contacts = f"{settings.contacts_topic}-ceiling"
    await create_topic(settings, contacts, settings.topic_partitions)
    result, log = machine.workdir / "ceiling.json", machine.workdir / "ceiling.log"
    spec = {"bootstrap": settings.bootstrap, "raw": settings.raw_topic, "contacts": contacts,
            "events": events, "result": str(result), "timeout": max(300.0, events / 500)}
    proc = machine.children.start("ceiling", [sys.executable, "-m", "harness.ceiling", json.dumps(spec)],
                                  env=bench_env(settings), log=log, cwd=BENCH, cpus=machine.subject_cpus)
    try:
        code = await asyncio.to_thread(proc.wait, spec["timeout"] + 60)
    except subprocess.TimeoutExpired:
        raise BenchError(f"the ceiling loop did not finish (log {log})") from None
    if code != 0 or not result.exists():
        raise BenchError(f"the ceiling loop exited with {code}:\n{tail(log)}")
    figures = json.loads(result.read_text())
    if figures["contacts"] != chats:
        raise BenchError(f"the ceiling loop emitted {figures['contacts']:,} contacts, not {chats:,}")
    return figures


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
