"""disable, enable, rotate-key and remove as an operator runs them at 3 a.m.: real processes, the real broker,
and the ingress answering what the commands promise."""

from __future__ import annotations

import subprocess
import sys

import httpx
import orjson
import pytest

from connectors.integrations.health import load_health
from connectors.kafka.clients import make_producer
from streams.domain.integration_health import health_key
from tests.kafka_records import SECRETS, wait_until
from tests.processes import settings_env

pytestmark = pytest.mark.integration
PREFIX = "freshstream: error: "


def cli(settings, *args, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**settings_env(settings), "FRESHSTREAM_LOG_LEVEL": "WARNING", **(extra_env or {})}
    result = subprocess.run([sys.executable, "-m", "connectors.cli", "integrations", *args], env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    for line in (result.stdout + result.stderr).splitlines():
        assert "Traceback" not in line and "aiokafka" not in line and "WARNING" not in line, line
    return result


def ok(settings, *args) -> str:
    result = cli(settings, *args)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return result.stdout.strip()


def error(settings, *args) -> str:
    result = cli(settings, *args)
    assert result.returncode == 1 and result.stdout == "", result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), result.stderr
    return lines[0][len(PREFIX):]


ANSWERS: list[int] = []


def post(ingress, key: str) -> int:
    body = orjson.dumps({"event": "onMessageCreate", "timestamp": 1714986001, "data": {"message": {
        "conversation_id": "conv-1", "actor_type": "user", "created_time": "2024-05-06T09:00:01.180Z"}}})
    status = httpx.post(f"{ingress.url}/webhooks/freshchat/acme-life", content=body, timeout=10,
                        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}).status_code
    ANSWERS.append(status)
    return status


def ingress_published_every_answer(loop_thread, settings) -> bool:
    """Waited for before remove: a record still to be flushed would land after the tombstone."""
    records = [r for r in loop_thread.run(load_health(settings)).records("acme-life") if r["source"] == "ingress"]
    return bool(records) and records[0]["accepted_requests"] == ANSWERS.count(202)


def test_disable_enable_rotate_and_remove(loop_thread, settings, ingress):
    ANSWERS.clear()
    key = orjson.loads(ok(settings, "add", "acme-life", "--domain", "acme.freshchat.com", "--json"))["ingress_key"]
    SECRETS.add(key)
    wait_until(lambda: post(ingress, key) == 202, what="the new key accepted")

    assert ok(settings, "disable", "acme-life") == "integration acme-life disabled: its requests are refused with 401"
    wait_until(lambda: post(ingress, key) == 401, what="the disabled integration refused")
    assert error(settings, "rotate-key", "acme-life") == (
        "integration acme-life is disabled, so a new key would be refused too; "
        "run 'freshstream integrations enable acme-life' first, then rotate-key")
    assert ok(settings, "disable", "acme-life") == "integration acme-life is disabled already; nothing changed"

    assert ok(settings, "enable", "acme-life") == ("integration acme-life enabled: requests with its current "
                                                    "ingress key or a valid signature are accepted again")
    wait_until(lambda: post(ingress, key) == 202, what="the same key accepted again")
    assert orjson.loads(ok(settings, "enable", "acme-life", "--json")) == {"id": "acme-life", "disabled": False}

    wait_until(lambda: ingress_published_every_answer(loop_thread, settings), timeout=15, interval=0.2,
               what="the ingress's health record published")
    loop_thread.run(_put_health(settings, health_key("acme-life", "freshchat_api", "w1")))
    assert error(settings, "remove", "acme-life") == (
        "'integrations remove acme-life' deletes the integration, its ingress key and its health records "
        "for good; add --yes to confirm")
    assert orjson.loads(ok(settings, "remove", "acme-life", "--yes", "--json")) == {
        "id": "acme-life", "removed": True, "health_records_removed": 2}

    wait_until(lambda: post(ingress, key) == 401, what="the removed integration refused")
    assert ok(settings, "list", "--json") == "[]"
    assert error(settings, "show", "acme-life") == (
        "no integration named 'acme-life'; 'freshstream integrations list' shows them")
    assert loop_thread.run(load_health(settings)).keys("acme-life") == []


async def _put_health(settings, key: bytes) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(settings.health_topic, orjson.dumps({"v": 1, "source": "freshchat_api"}), key=key)
    finally:
        await producer.stop()
