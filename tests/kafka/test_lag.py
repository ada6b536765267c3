"""Consumer lag in offsets and seconds: grows while the worker is stopped, drains when it is back."""

from __future__ import annotations

import subprocess
import sys

import httpx
import orjson
import pytest

from connectors.kafka.lag import measure_lag
from tests.kafka_records import wait_until
from tests.payloads import user_messages
from tests.processes import WorkerProcess, settings_env

pytestmark = pytest.mark.integration


def post_messages(ingress, key, start, count):
    response = httpx.post(f"{ingress.url}/webhooks/freshchat/acme", content=orjson.dumps(user_messages(count, start)),
                          headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 202


def raw_lag(loop_thread, settings):
    """Total lag and worst lag in seconds of the worker on the raw topic; None before any commit."""
    rows = [r for r in loop_thread.run(measure_lag(settings, [settings.worker_app_id]))
            if r.topic == settings.raw_topic]
    if not rows:
        return None
    return sum(r.lag for r in rows), max(r.lag_seconds for r in rows)


def test_lag_grows_while_the_worker_is_stopped_and_drains_after(loop_thread, settings, ingress, add_integration,
                                                                tmp_path):
    key = add_integration("acme")
    worker = WorkerProcess(settings, tmp_path, "first").start()
    post_messages(ingress, key, 0, 10)
    wait_until(lambda: raw_lag(loop_thread, settings) == (0, 0.0), timeout=30, interval=0.3,
               what="the worker caught up and committed")
    worker.stop()

    post_messages(ingress, key, 10, 20)
    first = raw_lag(loop_thread, settings)
    assert first[0] == 20 and first[1] >= 0
    wait_until(lambda: raw_lag(loop_thread, settings)[1] > first[1] + 0.5, timeout=10, interval=0.2,
               what="lag in seconds growing while nothing consumes")
    shown = subprocess.run([sys.executable, "-m", "connectors.cli", "lag", "--json", "--group", settings.worker_app_id],
                           env=settings_env(settings), capture_output=True, text=True, timeout=60)
    rows = orjson.loads(shown.stdout)
    assert {tuple(sorted(r)) for r in rows} == {
        ("committed", "end", "group", "lag", "lag_seconds", "partition", "topic")}
    assert sum(r["lag"] for r in rows if r["topic"] == settings.raw_topic) == 20

    worker = WorkerProcess(settings, tmp_path, "second").start()
    try:
        wait_until(lambda: raw_lag(loop_thread, settings) == (0, 0.0), timeout=60, interval=0.3,
                   what="the lag drained")
    finally:
        worker.stop()
