"""The `freshstream` command line as a user runs it: a real process against the real broker."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys

import orjson
import pytest

from connectors.kafka.broker import free_port
from tests.kafka_records import SECRETS, wait_until

pytestmark = pytest.mark.integration
API_KEY = "fc-api-key-8d1e2f3a4b5c6d7e"


def freshstream(settings, *args, env=None, check=True) -> subprocess.CompletedProcess:
    environment = {**os.environ, "FRESHSTREAM_KAFKA_BOOTSTRAP": settings.bootstrap,
                   "FRESHSTREAM_DATA_DIR": str(settings.data_dir),
                   "FRESHSTREAM_INTEGRATIONS_TOPIC": settings.integrations_topic,
                   "FRESHSTREAM_LOG_LEVEL": "DEBUG", **(env or {})}
    result = subprocess.run([sys.executable, "-m", "connectors.cli", *args], env=environment,
                            capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_integrations_lifecycle_with_json_output(settings, tmp_path, rsa_key):
    from tests.kafka_records import public_pem
    SECRETS.add(API_KEY)
    pem = tmp_path / "freshchat.pem"
    pem.write_text(public_pem(rsa_key).replace("PUBLIC KEY", "RSA PUBLIC KEY").replace("\n", " "))
    added = freshstream(settings, "integrations", "add", "acme-cli", "--domain", "acme.freshchat.com",
                        "--freshchat-api-key-env", "FC_KEY", "--webhook-public-key-file", str(pem), "--json",
                        env={"FC_KEY": API_KEY})
    first = orjson.loads(added.stdout)
    SECRETS.add(first["ingress_key"])
    assert first["id"] == "acme-cli" and first["ingress_key"].startswith("fsk_")

    listed = orjson.loads(freshstream(settings, "integrations", "list", "--json").stdout)
    shown = freshstream(settings, "integrations", "show", "acme-cli").stdout
    rotated = orjson.loads(freshstream(settings, "integrations", "rotate-key", "acme-cli", "--json").stdout)
    SECRETS.add(rotated["ingress_key"])
    disabled = freshstream(settings, "integrations", "disable", "acme-cli")
    final = orjson.loads(freshstream(settings, "integrations", "show", "acme-cli", "--json").stdout)

    assert [v["id"] for v in listed] == ["acme-cli"]
    assert listed[0]["freshchat_api_key"] == "set" and listed[0]["webhook_public_key"] == "set"
    assert "domain: https://acme.freshchat.com" in shown
    assert rotated["ingress_key"] != first["ingress_key"]
    assert "disabled" in disabled.stdout and final["disabled"] is True
    mode = (settings.data_dir / "secret.key").stat().st_mode & 0o777
    assert mode == 0o600


def test_no_secret_reaches_cli_output_other_than_the_key_it_issues(settings):
    SECRETS.add(API_KEY)
    added = freshstream(settings, "integrations", "add", "acme-quiet", "--domain", "acme.freshchat.com",
                        "--freshchat-api-key-env", "FC_KEY", env={"FC_KEY": API_KEY})
    key = re.search(r"fsk_\S+", added.stdout).group(0)
    SECRETS.add(key)
    shown = freshstream(settings, "integrations", "show", "acme-quiet", "--json")
    for text in (added.stderr, shown.stdout, shown.stderr):
        assert API_KEY not in text and key not in text
    assert "DEBUG" in added.stderr  # the check above ran against real debug logs


@pytest.mark.parametrize("args, message", [
    (["integrations", "add", "Bad_Name", "--domain", "acme.freshchat.com"], "must be 1-63 characters"),
    (["integrations", "add", "acme-x", "--domain", "ftp://nope"], "is not a Freshchat domain"),
    (["integrations", "show", "missing"], "no integration named 'missing'"),
    (["integrations", "add", "acme-y", "--domain", "a.freshchat.com", "--freshchat-api-key-env", "UNSET_VAR"],
     "UNSET_VAR: that variable is unset"),
])
def test_errors_are_one_line_and_nonzero(settings, args, message):
    result = freshstream(settings, *args, env={"FRESHSTREAM_LOG_LEVEL": "WARNING"}, check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("freshstream: error:") and message in lines[0]


def test_missing_broker_is_a_clear_error(tmp_path):
    port = free_port()
    result = subprocess.run([sys.executable, "-m", "connectors.cli", "integrations", "list"], timeout=60,
                            env={**os.environ, "FRESHSTREAM_BROKER_PORT": str(port), "FRESHSTREAM_LOG_LEVEL": "ERROR",
                                 "FRESHSTREAM_DATA_DIR": str(tmp_path), "FRESHSTREAM_BROKER_WAIT_SECONDS": "1"},
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert f"no Kafka broker answered at 127.0.0.1:{port}" in result.stderr


def test_broker_port_taken_is_a_clear_error(broker, tmp_path):
    result = subprocess.run([sys.executable, "-m", "connectors.cli", "broker", "--port", str(broker.port)],
                            env={**os.environ, "FRESHSTREAM_DATA_DIR": str(tmp_path)}, timeout=60,
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert f"port {broker.port} on 127.0.0.1 is taken" in result.stderr


def test_every_verb_has_help():
    for verb in (["dev"], ["broker"], ["ingress"], ["intervals"], ["integrations"], ["integrations", "add"]):
        result = subprocess.run([sys.executable, "-m", "connectors.cli", *verb, "--help"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "usage: freshstream" in result.stdout


def test_dev_runs_everything_prints_a_working_curl_and_stops_on_ctrl_c(tmp_path):
    ingress_port, broker_port = free_port(), free_port()
    env = {**os.environ, "FRESHSTREAM_DATA_DIR": str(tmp_path), "FRESHSTREAM_WORKER_WEB_PORT": str(free_port())}
    process = subprocess.Popen(
        [sys.executable, "-m", "connectors.cli", "dev", "--port", str(ingress_port), "--broker-port", str(broker_port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        wait_until(lambda: lines.append(process.stderr.readline()) or "Ctrl-C stops everything" in lines[-1],
                   timeout=60, what="the dev banner")
        curl = next(line for line in lines if line.strip().startswith("curl "))
        key = re.search(r"fsk_[\w-]+", curl).group(0)
        SECRETS.add(key)
        posted = subprocess.run(shlex.split(curl) + ["-w", "\n%{http_code}"], capture_output=True,
                                text=True, timeout=30)
        assert posted.stdout.strip().endswith("202"), posted.stdout
        resolve = {"event": "onConversationUpdate", "timestamp": 1714986100,
                   "data": {"actor": {"type": "agent", "id": "a-1"}, "conversation": {"conversation_id": "conv-0001"},
                            "changes": {"model_changes": {"status": ["assigned", "resolved"]}}}}
        resolved = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                                   f"http://127.0.0.1:{ingress_port}/webhooks/freshchat/demo",
                                   "-H", f"Authorization: Bearer {key}", "-H", "Content-Type: application/json",
                                   "-d", orjson.dumps(resolve).decode()], capture_output=True, text=True, timeout=30)
        assert resolved.stdout == "202"
        tail = subprocess.run([sys.executable, "-m", "connectors.cli", "tail", "--from-beginning", "--max", "1"],
                              env={**env, "FRESHSTREAM_BROKER_PORT": str(broker_port)}, capture_output=True,
                              text=True, timeout=90)
        contact = orjson.loads(tail.stdout)
        assert (contact["contact_id"], contact["queue"]) == ("demo:conv-0001:1", "Undefined_Queue")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    gone = subprocess.run(["pgrep", "-f", f"tcp://127.0.0.1:{broker_port}"], capture_output=True)
    assert gone.returncode == 1, "the embedded broker outlived freshstream dev"
    workers = subprocess.run(["pgrep", "-f", "connectors.cli worker"], capture_output=True, text=True)
    assert not any(str(tmp_path) in _environ_of(pid) for pid in workers.stdout.split())


def _environ_of(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""
