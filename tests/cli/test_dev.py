"""`freshstream dev` at 3 a.m.: real `dev` processes, their real embedded brokers and workers.

One pair of stacks serves several checks (side by side, worker restart, dying whole), since
each start costs a broker and a Faust worker on a 2-core machine.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from connectors.kafka.broker import free_port
from tests.kafka_records import SECRETS, wait_until

pytestmark = pytest.mark.integration
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d[ T][\d:,.]+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")  # main()'s log format


class Dev:
    """`freshstream dev` on free ports in `cwd`, its stdout and stderr read into `lines` as they come."""

    def __init__(self, cwd, *extra: str) -> None:
        self.port, self.broker_port, self.worker_port = free_port(), free_port(), free_port()
        self.cwd = cwd
        self.process = subprocess.Popen(
            [sys.executable, "-m", "connectors.cli", "dev", "--port", str(self.port), "--broker-port",
             str(self.broker_port), "--worker-port", str(self.worker_port), *extra],
            cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 90.0, after: int = 0) -> re.Match:
        def seen():
            assert self.process.poll() is None or any(re.search(pattern, ln) for ln in self.lines), \
                f"dev exited with {self.process.returncode}: " + "\n".join(self.lines[-20:])
            return next((m for ln in self.lines[after:] if (m := re.search(pattern, ln))), None)
        return wait_until(seen, timeout=timeout, interval=0.05, what=f"{pattern!r} from dev:\n" + "\n".join(self.lines[-20:]))

    @property
    def key(self) -> str:
        key = self.wait_for(r"ingress key for this run: (fsk_[\w-]+)").group(1)
        SECRETS.add(key)
        return key

    def post_chat(self, conversation: str) -> None:
        """A user message and the agent's resolve: one contact, `demo:<conversation>:1`."""
        now = int(time.time())
        events = [
            {"event": "onMessageCreate", "timestamp": now - 60,
             "data": {"actor": {"type": "user", "id": "u-1"},
                      "message": {"id": f"m-{conversation}", "conversation_id": conversation, "actor_type": "user",
                                  "message_type": "normal", "created_time": time.strftime(
                                      "%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now - 60)),
                                  "message_parts": [{"text": {"content": "Hello"}}]}}},
            {"event": "onConversationUpdate", "timestamp": now,
             "data": {"actor": {"type": "agent", "id": "a-1"}, "conversation": {"conversation_id": conversation},
                      "changes": {"model_changes": {"status": ["assigned", "resolved"]}}}},
        ]
        for event in events:
            answer = httpx.post(f"http://127.0.0.1:{self.port}/webhooks/freshchat/demo", json=event,
                                headers={"Authorization": f"Bearer {self.key}"}, timeout=30)
            assert answer.status_code == 202, answer.text

    def worker_ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.worker_port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its new parent has not reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def assert_quiet(dev: Dev) -> None:
    noisy = [ln for ln in dev.lines if "Traceback" in ln or LOG_LINE.match(ln) or re.search(r"\b(aiokafka|faust)\b", ln)]
    assert not noisy, noisy


def test_two_stacks_side_by_side_a_killed_worker_restarts_and_killing_dev_leaves_nothing(tmp_path):
    first, second = Dev(tmp_path, "--simulate", "3"), Dev(tmp_path, "--simulate", "2")
    try:
        for dev in (first, second):  # each in its own data dir, both deliver every expected contact
            dev.wait_for(r"^(\d+) of \1 contacts received, 0 differing$", timeout=120)
            assert (tmp_path / ".freshstream" / f"dev-{dev.port}" / "worker.log").exists()
        broker_pid = int(first.wait_for(r"broker started \(pid (\d+)").group(1))
        worker_pid = int(first.wait_for(r"worker started \(pid (\d+)").group(1))

        mark = len(first.lines)
        os.kill(worker_pid, signal.SIGKILL)
        first.wait_for(rf"worker \(pid {worker_pid}\) exited with code -9 \(SIGKILL\) .*restarting in", timeout=5,
                       after=mark)
        restarted = int(first.wait_for(r"worker restarted \(pid (\d+)\)", timeout=30, after=mark).group(1))
        # posted once it serves again: events posted during its recovery were once seen not to become a
        # contact (2 runs of ~10 under load), a worker matter reported apart from dev's supervision
        wait_until(lambda: first.worker_ready(), timeout=60, interval=0.2, what="the restarted worker ready")
        first.post_chat("conv-after-restart")
        first.wait_for(r"^contact demo:conv-after-restart:1 ", timeout=90, after=mark)

        first.process.send_signal(signal.SIGKILL)  # no chance to stop anything: its children must go by themselves
        first.process.wait(30)
        wait_until(lambda: gone(restarted) and gone(broker_pid), timeout=10, what="dev's worker and broker to die with it")

        second.process.send_signal(signal.SIGINT)
        assert second.process.wait(60) == 0
        second.wait_for(r"freshstream dev stopped", timeout=5)
        for dev in (first, second):
            assert_quiet(dev)
    finally:
        first.kill()
        second.kill()


def test_a_taken_worker_port_is_one_line_naming_the_flag_and_nothing_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        worker_port, ingress_port, broker_port = taken.getsockname()[1], free_port(), free_port()
        result = subprocess.run(
            [sys.executable, "-m", "connectors.cli", "dev", "--port", str(ingress_port), "--broker-port",
             str(broker_port), "--worker-port", str(worker_port)], cwd=tmp_path, timeout=60,
            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (f"freshstream: error: port {worker_port} is taken on 127.0.0.1 (Address already in use); "
                             "pick another with --worker-port\n")
    assert not (tmp_path / ".freshstream" / f"dev-{ingress_port}").exists()
