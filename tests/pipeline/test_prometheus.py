"""A real Prometheus scrapes the running pipeline and sees lag appear and drain.

Runs whenever a `prometheus` binary is on PATH (Debian's package; .ci/run installs it).
"""

from __future__ import annotations

import shutil
import subprocess

import httpx
import orjson
import pytest

from connectors.kafka.broker import free_port
from tests.kafka_records import wait_until
from tests.payloads import user_messages
from tests.processes import WorkerProcess

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("prometheus") is None, reason="no prometheus binary on PATH")]


@pytest.fixture
def prometheus(tmp_path):
    """Prometheus scraping targets the test names, every 0.5 s."""
    port = free_port()
    config = tmp_path / "prometheus.yml"

    def start(targets: dict[str, str]):
        config.write_text("global:\n  scrape_interval: 500ms\nscrape_configs:\n" + "".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
            for job, target in targets.items()))
        process = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "prometheus.log", "wb"))
        started.append(process)
        wait_until(lambda: _ready(port), timeout=30, what="prometheus ready")
        return port

    started: list[subprocess.Popen] = []
    yield start
    for process in started:
        process.terminate()
        process.wait(30)


def _ready(port) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def query(port, expr) -> list:
    body = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def scalar(port, expr) -> float | None:
    result = query(port, expr)
    return float(result[0]["value"][1]) if result else None


def test_prometheus_sees_lag_of_a_stopped_worker_appear_and_drain(settings, ingress, add_integration, tmp_path,
                                                                  prometheus):
    pause = tmp_path / "pause"
    settings = settings.replace(lag_check_seconds=0.5, debug_pause_file=str(pause))
    key = add_integration("acme")
    worker = WorkerProcess(settings, tmp_path).start()
    try:
        port = prometheus({"worker": f"127.0.0.1:{worker.port}", "ingress": f"127.0.0.1:{ingress.port}"})
        # each target is scraped on its own schedule: wait for every series, not the first one
        wait_until(lambda: all(query(port, series) for series in (
            "freshstream_worker_lag_records", "freshstream_worker_lag_seconds", 'up{job="ingress"} == 1')),
                   timeout=30, interval=0.5, what="lag series and the ingress scraped")
        pause.touch()  # the worker stops processing: a stopped consumer, its /metrics still served
        response = httpx.post(f"{ingress.url}/webhooks/freshchat/acme", content=orjson.dumps(user_messages(40)),
                              headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        assert response.status_code == 202
        wait_until(lambda: (scalar(port, "sum(freshstream_worker_lag_records)") or 0) >= 40, timeout=30,
                   interval=0.5, what="the lag visible in Prometheus")
        wait_until(lambda: (scalar(port, "max(freshstream_worker_lag_seconds)") or 0) > 1, timeout=30,
                   interval=0.5, what="lag in seconds growing in Prometheus")
        assert (scalar(port, 'sum(freshstream_ingress_requests_total{integration="acme",status="202"})') or 0) >= 1
        pause.unlink()
        wait_until(lambda: scalar(port, "sum(freshstream_worker_lag_records)") == 0
                   and scalar(port, "max(freshstream_worker_lag_seconds)") == 0, timeout=60, interval=0.5,
                   what="the lag drained in Prometheus")
    finally:
        pause.unlink(missing_ok=True)
        worker.stop()
