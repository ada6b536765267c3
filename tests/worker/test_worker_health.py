"""A worker whose agent is stuck turns unhealthy within the configured time, with its lag on /metrics."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.kafka_records import wait_until
from tests.payloads import user_messages
from tests.processes import WorkerProcess

pytestmark = pytest.mark.integration


def health(worker) -> int:
    return httpx.get(f"{worker.url}/healthz", timeout=5).status_code


def lag_records(worker) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in worker.metrics().splitlines()
               if line.startswith("freshstream_worker_lag_records{"))


def test_stuck_agent_is_unhealthy_then_recovers(settings, ingress, add_integration, tmp_path):
    pause = tmp_path / "pause"
    settings = settings.replace(stall_seconds=3.0, lag_check_seconds=0.5, debug_pause_file=str(pause))
    key = add_integration("acme")
    worker = WorkerProcess(settings, tmp_path).start()
    try:
        assert health(worker) == 200
        pause.touch()
        response = httpx.post(f"{ingress.url}/webhooks/freshchat/acme", content=orjson.dumps(user_messages(30)),
                              headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        assert response.status_code == 202
        wait_until(lambda: health(worker) == 503, timeout=20, interval=0.25, what="/healthz 503 while stuck")
        assert lag_records(worker) > 0
        assert httpx.get(f"{worker.url}/healthz").json()["stalled_partitions"]
        pause.unlink()
        wait_until(lambda: health(worker) == 200 and lag_records(worker) == 0, timeout=30, interval=0.25,
                   what="healthy and caught up once unstuck")
    finally:
        pause.unlink(missing_ok=True)
        worker.stop()
