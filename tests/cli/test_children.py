"""What `dev` decides on its own: when to give up on a child, which ports it refuses, when its simulation runs."""

from __future__ import annotations

import asyncio
import socket
import sys
from datetime import datetime, timedelta, timezone

import pytest

from connectors.cli.children import ChildProcess, Supervisor, last_error_line
from connectors.cli.dev import check_ports
from connectors.simulation.scenario import compare_contacts, scenario_ending_now
from streams.errors import ChildError, UsageError
from streams.settings import Settings


def test_a_child_failing_at_start_is_restarted_with_backoff_then_given_up_in_one_line(tmp_path):
    crash = "import sys; print('2024-05-06 INFO x: fine'); print('freshstream: error: no broker', file=sys.stderr); sys.exit(3)"
    child = ChildProcess(Settings(data_dir=tmp_path), [], tmp_path / "child.log", command=[sys.executable, "-c", crash])
    said: list[str] = []
    supervisor = Supervisor("worker", child, said.append, first_delay=0.01, give_up=3)

    async def run():
        await supervisor.start()
        await supervisor.task

    with pytest.raises(ChildError) as failed:
        asyncio.run(asyncio.wait_for(run(), 30))
    assert "exited with code 3" in str(failed.value) and "freshstream: error: no broker" in str(failed.value)
    assert "failed 3 times in a row" in str(failed.value)
    assert [line.split(" (pid")[0] for line in said] == [
        "worker started", "worker", "worker restarted", "worker", "worker restarted"]
    assert "restarting in 0.01 s" in said[1] and "restarting in 0.02 s" in said[3]


def test_the_last_error_line_is_the_exception_of_a_traceback_or_none(tmp_path):
    log = tmp_path / "worker.log"
    log.write_text("2024-05-06 10:00:00,000 INFO faust: ready\nTraceback (most recent call last):\n"
                   '  File "x.py", line 1\nRuntimeError: boom\n2024-05-06 10:00:01,000 INFO faust: again\n')
    assert last_error_line(log) == "RuntimeError: boom"
    assert last_error_line(log, offset=log.stat().st_size) is None


def test_a_taken_or_repeated_port_names_its_flag():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        number = taken.getsockname()[1]
        with pytest.raises(UsageError, match=rf"^port {number} is taken on 127.0.0.1 .*; pick another with --broker-port$"):
            check_ports(Settings(ingress_port=1, broker_port=number, worker_web_port=2))
    with pytest.raises(UsageError, match="given to both --port and --worker-port"):
        check_ports(Settings(ingress_port=number, broker_port=number + 1, worker_web_port=number))


def test_the_simulated_timeline_ends_about_now_and_its_contacts_compare_by_final_revision():
    now = datetime(2026, 1, 2, 3, 0, tzinfo=timezone.utc)
    scenario = scenario_ending_now("demo", 20, now=now)
    last = max(datetime.fromisoformat(c["resolved_at"].replace("Z", "+00:00")) for c in scenario.expected)
    assert now - timedelta(minutes=15) <= last <= now
    first, second = scenario.expected[:2]
    received = [{**first, "revision": 1, "emitted_at": "a"}, {**first, "queue": "x", "revision": 2, "emitted_at": "b"},
                {**second, "revision": 1, "emitted_at": "a"}, {**second, "revision": 2, "retracted": True, "emitted_at": "b"}]
    assert compare_contacts(scenario.expected, received) == (1, 1)


def test_each_dev_stack_has_its_own_data_dir_and_adopts_the_shared_integrations(tmp_path, monkeypatch):
    from connectors.cli.dev import stack_settings
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".freshstream").mkdir()
    (tmp_path / ".freshstream" / "integrations.jsonl").write_text("demo\t{}\n")
    stack = stack_settings(Settings(ingress_port=8081))
    assert stack.data_dir == tmp_path.joinpath(".freshstream", "dev-8081").relative_to(tmp_path)
    assert (tmp_path / stack.data_dir / "integrations.jsonl").read_text() == "demo\t{}\n"
    assert stack.secret_key == (tmp_path / ".freshstream" / "secret.key").read_text().strip()
    assert stack_settings(Settings(data_dir=tmp_path / "mine")).data_dir == tmp_path / "mine"
