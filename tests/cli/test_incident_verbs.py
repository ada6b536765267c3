"""`replay`, `lag` and `tail` as an operator runs them at 3 a.m.: real processes against the embedded
broker, at the default log levels, so what is checked is what a terminal shows.

Each test starts its processes at once and checks them together, so their start-up overlaps.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from connectors.integrations.records import new_ingress_key, new_integration
from connectors.kafka.topics import ensure_topics
from streams.domain.envelope import encode_envelope, event_id, parse_body
from streams.domain.keys import chat_key
from streams.domain.times import ms_to_short_time
from tests.kafka_records import put_integration
from tests.payloads import user_messages
from tests.processes import settings_env

pytestmark = pytest.mark.integration
PREFIX = "freshstream: error: "


def start(settings, *args: str) -> subprocess.Popen:
    env = {**settings_env(settings), "FRESHSTREAM_LOG_LEVEL": "INFO", "FRESHSTREAM_LIBRARY_LOG_LEVEL": "INFO"}
    return subprocess.Popen([sys.executable, "-m", "connectors.cli", *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(processes: dict[str, subprocess.Popen], timeout: float = 90) -> dict[str, tuple[int, str, str]]:
    """(exit code, stdout, stderr) of each; none may show a traceback or a Kafka library's log line."""
    results = {}
    try:
        for name, process in processes.items():
            out, err = process.communicate(timeout=timeout)
            results[name] = (process.returncode, out, err)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(10)
    noisy = [f"{name}: {line}" for name, (_, out, err) in results.items() for line in (out + err).splitlines()
             if "Traceback" in line or " aiokafka" in line or " kafka." in line]
    assert not noisy, "\n".join(noisy)
    return results


def error_line(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert code == 1 and out == "" and len(err.splitlines()) == 1 and err.startswith(PREFIX), result
    return err.rstrip("\n")


async def produce_raw(settings, times_ms: list[int]) -> None:
    """Envelopes as the ingress writes them, with the record times given."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all")
    await producer.start()
    try:
        body = orjson.dumps(user_messages(len(times_ms)))
        for index, (event, at) in enumerate(zip(parse_body(body), times_ms)):
            value = encode_envelope(event_id=event_id("acme", body, index), integration="acme",
                                    received_at=ms_to_short_time(at), fmt=event.format, retry_count=0,
                                    payload=event.payload)
            await producer.send_and_wait(settings.raw_topic, value, key=chat_key("acme", event.conversation_id).encode(),
                                         timestamp_ms=at)
    finally:
        await producer.stop()


def test_replay_checks_what_was_typed_echoes_the_window_and_answers_an_empty_one(loop_thread, settings):
    loop_thread.run(ensure_topics(settings))
    loop_thread.run(put_integration(settings, new_integration("acme", "acme.freshchat.com", new_ingress_key())))
    hour = 3_600_000
    first = (int(time.time()) - 5 * 3600) * 1000
    loop_thread.run(produce_raw(settings, [first, first + hour // 2]))
    typo = settings.contacts_topic[:-1]
    processes = {
        "no zone": start(settings, "replay", "--since", "2026-12-01T09:00:00"),
        "unknown integration": start(settings, "replay", "--since", "2h", "--integration", "acme-eu"),
        "unknown target": start(settings, "replay", "--since", "2h", "--to", typo),
        "empty window": start(settings, "replay", "--since", "now-3h", "--until", "90m", "--dry-run", "--json"),
        "empty window, text": start(settings, "replay", "--since", "3h", "--to", "new-" + typo, "--create-topic"),
    }
    results = finish(processes)

    assert error_line(results["no zone"]) == (
        f"{PREFIX}--since '2026-12-01T09:00:00' has no zone: add Z for UTC or an offset "
        "(2026-12-01T09:00:00Z, or 2026-12-01T09:00:00+02:00 for CEST)")
    assert error_line(results["unknown integration"]) == (
        f"{PREFIX}--integration 'acme-eu': no such integration; the integrations are: acme")
    assert error_line(results["unknown target"]) == (
        f"{PREFIX}--to {typo!r}: no such topic on {settings.bootstrap}; did you mean {settings.contacts_topic!r}? "
        "check the name, or add --create-topic to create it")

    held = (f"no contact was resolved in the window; the raw topic {settings.raw_topic} holds records received "
            f"from {ms_to_short_time(first)} to {ms_to_short_time(first + hour // 2)}")
    code, out, err = results["empty window"]
    assert code == 0 and orjson.loads(out) == {"rebuilt": 0, "present": 0, "missing": 0, "differing": 0,
                                               "retracted": 0}, (out, err)
    lines = err.splitlines()
    window = [line for line in lines if line.startswith("replay: window ")]
    assert len(window) == 1 and window[0].endswith(
        f"(1 h 30 min), every integration, from {settings.raw_topic} into {settings.contacts_topic} "
        "(dry run: nothing is written)"), err
    assert lines.index(window[0]) == 0, "the window is echoed before any work"
    assert f"replay: raw topic {settings.raw_topic}: 2/2 records (100.0%)" in lines, err  # stderr is no terminal
    assert lines[-1] == "replay: " + held, err

    code, out, err = results["empty window, text"]
    assert code == 0 and out.splitlines()[-1] == held, (out, err)


async def commit_without_joining(settings, group: str, topic: str) -> None:
    """Offsets 0 committed for `group` by no member: what a worker that died leaves behind (a stopped
    consumer cannot stand in for it: the embedded broker keeps a first-generation member listed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(partitions)
        await consumer.commit({tp: 0 for tp in partitions})
    finally:
        await consumer.stop()


async def join(settings, group: str, topic: str, commit_at: int) -> AIOKafkaConsumer:
    """A member of `group` on `topic`, with offset `commit_at` committed on every partition."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.bootstrap, group_id=group, client_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    deadline = time.monotonic() + 60
    while not consumer.assignment():
        assert time.monotonic() < deadline, f"{group} got no assignment"
        await consumer.getmany(timeout_ms=200)
    await consumer.commit({tp: commit_at for tp in consumer.assignment()})
    return consumer


def test_lag_names_an_unknown_group_and_shows_members_so_a_dead_worker_is_visible(loop_thread, settings):
    topic, suffix = settings.raw_topic, uuid.uuid4().hex[:6]
    dead, live = f"dead-{suffix}", f"live-{suffix}"
    loop_thread.run(produce_raw(settings, [int(time.time() * 1000)] * 3))
    loop_thread.run(commit_without_joining(settings, dead, topic))  # lag, and nobody left to consume
    member = loop_thread.run(join(settings, live, topic, 0))
    try:
        processes = {
            "unknown": start(settings, "lag", "--group", "nosuch"),
            "both": start(settings, "lag", "--group", dead, "--group", live),
            "zero watch": start(settings, "lag", "--watch", "0"),
            "tail --max 0": start(settings, "tail", "--max", "0"),
        }
        watch = start(settings, "lag", "--group", live, "--watch", "0.2")
        headers = []
        deadline = time.monotonic() + 60
        while len(headers) < 2 and time.monotonic() < deadline and (line := watch.stdout.readline()):
            if line.startswith("lag at "):
                headers.append(line)
        watch.terminate()
        results = finish({**processes, "watch": watch})
    finally:
        loop_thread.run(member.stop())

    unknown = error_line(results["unknown"])
    assert unknown.startswith(f"{PREFIX}no consumer group 'nosuch' on {settings.bootstrap}; the groups are: ")
    assert dead in unknown and live in unknown
    code, out, err = results["both"]
    assert code == 0, err
    assert out.startswith("lag at ") and out.splitlines()[0].endswith("Z")
    assert f"{dead}: lag 3 records on " in out and "no members: nothing is consuming (is the worker running?)" in out
    assert f"; 1 member: {live}-" in out, out
    assert error_line(results["zero watch"]) == (
        f"{PREFIX}argument --watch: must be above zero, not 0; see 'freshstream lag --help'")
    assert error_line(results["tail --max 0"]) == (
        f"{PREFIX}argument --max: must be above zero, not 0; see 'freshstream tail --help'")
    assert len(headers) == 2 and all(h.rstrip().endswith("Z") for h in headers), headers  # each refresh, its time
    assert results["watch"][0] == 0, "SIGTERM ends --watch cleanly"
