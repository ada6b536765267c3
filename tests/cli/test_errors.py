"""What a user sees when a verb cannot run: one `freshstream: error: …` line, exit 1, no traceback.

Real processes (`python -m connectors.cli`), at the default log level unless a verb needs the
broker (its INFO lines are then not the point). Each test starts its cases at once and
checks them together, so the slow ones (a wait for an absent broker) overlap.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from connectors.kafka.broker import free_port
from connectors.kafka.topics import ensure_topics
from tests.processes import settings_env

PREFIX = "freshstream: error: "


def start(args: list[str], env: dict[str, str], base: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "connectors.cli", *args], env={**(base or os.environ), **env},
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_one_error_line(cases: dict[str, tuple[subprocess.Popen, str]], timeout: float = 90) -> None:
    """Each process exits 1 with exactly one stderr line: the prefix, then a message containing `expected`."""
    failures = []
    try:
        for name, (process, expected) in cases.items():
            _, err = process.communicate(timeout=timeout)
            lines = err.splitlines()
            if not (process.returncode == 1 and len(lines) == 1 and lines[0].startswith(PREFIX)
                    and expected in lines[0] and "Traceback" not in err):
                failures.append(f"{name}: exit {process.returncode}, wanted {expected!r}, stderr: {err[-1500:]}")
    finally:
        for process, _ in cases.values():
            if process.poll() is None:
                process.kill()
                process.wait(10)
    assert not failures, "\n".join(failures)


@pytest.fixture
def quiet_env(tmp_path) -> dict[str, str]:
    """A data dir of the test's own, and a broker port nothing listens on."""
    return {"FRESHSTREAM_DATA_DIR": str(tmp_path / "data"), "FRESHSTREAM_BROKER_PORT": str(free_port()),
            "FRESHSTREAM_BROKER_WAIT_SECONDS": "3"}  # the worker would wait 30 s for a broker that never comes


def test_a_bad_setting_is_named_in_one_line(quiet_env, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    ssl = {"FRESHSTREAM_KAFKA_SECURITY_PROTOCOL": "SSL", "FRESHSTREAM_KAFKA_SSL_CAFILE": str(tmp_path / "no-ca.pem")}
    cases = {
        "lag, a port that is not a number": (
            ["lag"], {"FRESHSTREAM_INGRESS_PORT": "eighty"}, "FRESHSTREAM_INGRESS_PORT='eighty'"),
        "tail, an unknown log level": (["tail"], {"FRESHSTREAM_LOG_LEVEL": "loud"}, "FRESHSTREAM_LOG_LEVEL='loud'"),
        "integrations, a malformed bootstrap": (
            ["integrations", "list"], {"FRESHSTREAM_KAFKA_BOOTSTRAP": "kafka:port"}, "FRESHSTREAM_KAFKA_BOOTSTRAP="),
        "ingress, an unknown security protocol": (
            ["ingress"], {"FRESHSTREAM_KAFKA_SECURITY_PROTOCOL": "TLS"}, "FRESHSTREAM_KAFKA_SECURITY_PROTOCOL='TLS'"),
        "replay, a CA file that is not there": (
            ["replay", "--since", "2024-05-06T00:00:00Z"], ssl, "FRESHSTREAM_KAFKA_SSL_CAFILE="),
        "worker, an unknown store": (["worker"], {"FRESHSTREAM_WORKER_STORE": "redis://"}, "FRESHSTREAM_WORKER_STORE="),
        "broker, a data dir that is a file": (
            ["broker", "--port", str(free_port())], {"FRESHSTREAM_DATA_DIR": str(a_file)}, "FRESHSTREAM_DATA_DIR"),
    }
    assert_one_error_line({name: (start(args, {**quiet_env, **env}), expected)
                           for name, (args, env, expected) in cases.items()})


def test_a_bad_file_or_flag_is_named_in_one_line_before_any_broker_is_needed(quiet_env, tmp_path):
    not_a_key = tmp_path / "not-a-key.pem"
    not_a_key.write_text("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n")
    add = ["integrations", "add", "acme", "--domain", "acme.freshchat.com"]
    key_file = tmp_path / "ingress.key"
    key_file.write_text("k")
    simulate = ["simulate", "--integration", "acme", "--key-file", str(key_file), "--chats", "1"]
    cases = {
        "a public key file that is not there": (
            [*add, "--webhook-public-key-file", str(tmp_path / "missing.pem")], "--webhook-public-key-file"),
        "a public key file that holds no key": (
            [*add, "--webhook-public-key-file", str(not_a_key)], "--webhook-public-key-file"),
        "an API key file that is a directory": (
            [*add, "--freshchat-api-key-file", str(tmp_path)], "--freshchat-api-key-file"),
        "an expectation file in a missing directory": (
            [*simulate, "--expect", str(tmp_path / "missing" / "expected.jsonl")], "--expect"),
        "an ingress URL without a scheme": ([*simulate, "--url", "localhost:8080"], "--url 'localhost:8080'"),
        "a time that is not one": (["replay", "--since", "yesterday"], "--since 'yesterday'"),
    }
    assert_one_error_line({name: (start(args, quiet_env), expected) for name, (args, expected) in cases.items()})


def test_an_unexpected_exception_is_one_line_with_its_traceback_only_at_debug(quiet_env):
    """The last resort in main(): a verb fails in a way nobody translated (here, on purpose)."""
    code = ("import sys\nfrom connectors.cli import lag, main\n"
            "async def broken(*args):\n    raise RuntimeError('the lag table\\nis broken')\n"
            "lag.run = broken\nsys.exit(main.main(['lag']))\n")
    line = (f"{PREFIX}unexpected RuntimeError: the lag table is broken "
            "(run with FRESHSTREAM_LOG_LEVEL=debug for the traceback)")

    def run(**env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], env={**os.environ, **quiet_env, **env},
                              capture_output=True, text=True, timeout=60)

    quiet, verbose = run(), run(FRESHSTREAM_LOG_LEVEL="debug")
    assert (quiet.returncode, quiet.stderr) == (1, line + "\n")
    assert verbose.returncode == 1 and verbose.stderr.splitlines()[-1] == line
    assert "Traceback" in verbose.stderr and "RuntimeError: the lag table" in verbose.stderr


def test_ctrl_c_while_waiting_for_the_broker_exits_130_quietly(quiet_env):
    # SIGINT's default handler set again: a child of a non-interactive shell may inherit it ignored
    code = ("import signal, sys\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "from connectors.cli.main import main\nprint('started', flush=True)\nsys.exit(main(['ingress']))\n")
    env = {**os.environ, **quiet_env, "FRESHSTREAM_BROKER_WAIT_SECONDS": "30"}  # a wide window to interrupt
    process = subprocess.Popen([sys.executable, "-c", code], env=env, text=True,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout.readline() == "started\n"
        time.sleep(0.5)  # not synchronisation: any moment of the 10 s wait will do, this one is past start-up
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert (process.returncode, err) == (130, "")


@pytest.mark.integration
def test_no_broker_is_one_line_naming_the_address_for_every_verb_that_needs_one(quiet_env):
    port = quiet_env["FRESHSTREAM_BROKER_PORT"]
    expected = f"no Kafka broker answered at 127.0.0.1:{port}"
    external = {"FRESHSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"}  # else dev would start its own
    cases = {
        "lag": (["lag"], {}),
        "tail": (["tail"], {}),
        "replay": (["replay", "--since", "2024-05-06T00:00:00Z"], {}),
        "integrations": (["integrations", "list"], {}),
        "ingress": (["ingress", "--port", str(free_port())], {}),
        "dev": (["dev", "--port", str(free_port())], external),
        "worker": (["worker", "--web-port", str(free_port())], {}),
    }
    assert_one_error_line({name: (start(args, {**quiet_env, **env}), expected)
                           for name, (args, env) in cases.items()})


@pytest.mark.integration
def test_what_the_running_broker_refuses_is_one_line(loop_thread, settings, broker):
    loop_thread.run(ensure_topics(settings))  # so that only the topics named below are missing
    env = {**settings_env(settings), "FRESHSTREAM_LOG_LEVEL": "ERROR"}  # a slow start may warn; not the point
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    cases = {
        "tail of a topic that is not there": (
            ["tail"], {"FRESHSTREAM_CONTACTS_TOPIC": missing + "-contacts"}, "check FRESHSTREAM_CONTACTS_TOPIC"),
        "replay of a raw topic that is not there": (
            ["replay", "--since", "2024-05-06T00:00:00Z", "--dry-run"], {"FRESHSTREAM_RAW_TOPIC": missing + "-raw"},
            "check FRESHSTREAM_RAW_TOPIC"),
        "an ingress on a port that is taken": (
            ["ingress", "--port", str(broker.port)], {}, f"cannot listen on 127.0.0.1:{broker.port}"),
        "a worker whose web port is taken": (
            ["worker", "--web-port", str(broker.port)], {}, "--web-port"),
    }
    assert_one_error_line({name: (start(args, extra, base={**os.environ, **env}), expected)
                           for name, (args, extra, expected) in cases.items()})
