"""`freshstream simulate` against a real ingress and the embedded broker: every delivery lands, in chat order."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
from collections import defaultdict

import httpx
import orjson
import pytest

from connectors.cli import simulate as simulate_command
from connectors.simulation.poster import post_scenario
from connectors.simulation.scenario import build_scenario
from streams.domain.envelope import parse_body
from streams.errors import SimulationError
from tests.kafka_records import read_topic, values

pytestmark = pytest.mark.integration


def test_every_delivery_lands_on_the_raw_topic_in_chat_order(loop_thread, settings, ingress, add_integration):
    key = add_integration("acme-sim")
    scenario = build_scenario("acme-sim", 30, seed=11)
    summary = loop_thread.run(post_scenario(ingress.url, "acme-sim", key, scenario, concurrency=6))

    count = len(scenario.deliveries)
    assert (summary["deliveries"], summary["accepted"], summary["retries"]) == (count, count, 0)
    records = loop_thread.run(read_topic(settings, settings.raw_topic, count, timeout=20))
    assert len(records) == count
    landed = defaultdict(list)
    for record, envelope in zip(records, values(records)):
        landed[record.key.decode()].append((orjson.dumps(envelope["payload"]), envelope["retry_count"]))
    sent = defaultdict(list)
    for delivery in scenario.deliveries:
        sent[f"acme-sim:{delivery.chat}"].append(
            (orjson.dumps(orjson.loads(delivery.body)), int(delivery.headers.get("X-Retry-Count", 0))))
    assert landed == sent


def test_run_writes_the_expectation_and_reports_one_line(loop_thread, ingress, add_integration, tmp_path):
    key = add_integration("acme-cli-sim")
    expect = tmp_path / "expected.jsonl"
    args = argparse.Namespace(url=ingress.url, integration="acme-cli-sim", key=key, chats=5, rate=None,
                              seed=2, expect=str(expect), concurrency=2)
    lines = []
    assert loop_thread.run(simulate_command.run(args, None, lines.append)) == 0

    written = [orjson.loads(line) for line in expect.read_text().splitlines()]
    assert written == build_scenario("acme-cli-sim", 5, 2).expected
    assert len(lines) == 1 and "deliveries" in lines[0] and key not in lines[0]


def test_a_refused_delivery_fails_with_the_ingress_message(loop_thread, ingress, add_integration):
    add_integration("acme-refused")
    scenario = build_scenario("acme-refused", 3, seed=5)
    with pytest.raises(SimulationError, match="HTTP 401 unauthorized: missing or invalid credentials"):
        loop_thread.run(post_scenario(ingress.url, "acme-refused", "fsk_wrong", scenario))


def test_the_key_comes_from_a_variable_or_a_file_and_on_the_command_line_only_with_a_warning(
        ingress, add_integration, tmp_path):
    key = add_integration("acme-keys")
    key_file = tmp_path / "ingress.key"
    key_file.write_text(key + "\n")
    base = [sys.executable, "-m", "connectors.cli", "simulate", "--url", ingress.url, "--integration", "acme-keys",
            "--chats", "1"]
    env = {**os.environ, "ACME_KEY": key, "EMPTY_KEY": ""}
    cases = {"env": ["--key-env", "ACME_KEY"], "file": ["--key-file", str(key_file)], "flag": ["--key", key],
             "unset": ["--key-env", "EMPTY_KEY"], "missing": ["--key-file", str(tmp_path / "none")],
             "none": []}
    runs = {name: subprocess.Popen(base + flags, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for name, flags in cases.items()}
    out = {name: (p.communicate(timeout=60), p.returncode) for name, p in runs.items()}

    for name in ("env", "file", "flag"):
        (stdout, _), code = out[name]
        assert code == 0 and stdout.startswith("simulate: posted ") and len(stdout.splitlines()) == 1, out[name]
    assert out["env"][0][1] == out["file"][0][1] == ""
    assert out["flag"][0][1] == ("freshstream: warning: --key shows the ingress key to anyone who can run ps, and "
                                 "keeps it in shell history; use --key-env VAR or --key-file PATH\n")
    assert out["unset"] == (("", "freshstream: error: --key-env EMPTY_KEY: that variable is unset or empty; "
                                 "export the integration's ingress key in it\n"), 1)
    assert out["missing"] == (("", f"freshstream: error: --key-file {tmp_path / 'none'}: cannot read it "
                                   "(No such file or directory)\n"), 1)
    (_, stderr), code = out["none"]
    assert code == 1 and stderr.startswith("freshstream: error: ") and "--key-env" in stderr
    assert len(stderr.splitlines()) == 1
    for (stdout, stderr), _ in out.values():
        assert key not in stdout + stderr and "Traceback" not in stdout + stderr


class RecordingIngress:
    """An in-process stand-in for the ingress that answers after a seeded delay and records overlap."""

    def __init__(self, fail_first: int = 0) -> None:
        self.rng = random.Random(9)
        self.in_flight: dict[str, int] = defaultdict(int)
        self.peak_total = self.peak_per_chat = self.total = 0
        self.order: dict[str, list[bytes]] = defaultdict(list)
        self.retry_headers: list[str] = []
        self.fail_first = fail_first

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        chat = parse_body(request.content)[0].conversation_id
        self.in_flight[chat] += 1
        self.total += 1
        self.peak_total = max(self.peak_total, self.total)
        self.peak_per_chat = max(self.peak_per_chat, self.in_flight[chat])
        await asyncio.sleep(self.rng.random() / 500)  # simulated server latency, not synchronisation
        self.in_flight[chat] -= 1
        self.total -= 1
        if self.fail_first:
            self.fail_first -= 1
            return httpx.Response(503, headers={"Retry-After": "0"}, json={"error": "broker_unavailable"})
        self.retry_headers.append(request.headers.get("X-Retry-Count", "0"))
        self.order[chat].append(request.content)
        return httpx.Response(202, json={"accepted": 1, "event_ids": ["x"]})


def test_one_chat_never_has_two_requests_in_flight():
    scenario = build_scenario("acme-mock", 60, seed=4)
    server = RecordingIngress()

    async def post():
        async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as client:
            return await post_scenario("http://ingress", "acme-mock", "fsk_mock", scenario,
                                       concurrency=5, client=client)

    summary = asyncio.run(post())
    assert summary["accepted"] == len(scenario.deliveries)
    assert server.peak_per_chat == 1 and 1 < server.peak_total <= 5
    expected = defaultdict(list)
    for delivery in scenario.deliveries:
        expected[delivery.chat].append(delivery.body)
    assert server.order == expected


def test_a_503_is_retried_with_a_higher_retry_count():
    scenario = build_scenario("acme-mock", 1, seed=4)
    server = RecordingIngress(fail_first=2)

    async def post():
        async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as client:
            return await post_scenario("http://ingress", "acme-mock", "fsk_mock", scenario, client=client)

    summary = asyncio.run(post())
    assert summary["retries"] == 2 and summary["accepted"] == len(scenario.deliveries)
    assert server.retry_headers[0] == "2"
