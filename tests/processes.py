"""freshstream processes started by tests the way a user starts them: `python -m connectors.cli …`."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx

from connectors.broker import free_port
from connectors.child import child_environment
from streams.settings import Settings
from tests.kafka_records import wait_until


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process build these same settings."""
    return child_environment(settings)


class WorkerProcess:
    """A `freshstream worker` child process with its log in a file."""

    def __init__(self, settings: Settings, log_dir: Path, name: str = "worker") -> None:
        self.settings, self.port = settings, free_port()
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self, ready_timeout: float = 90.0) -> "WorkerProcess":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "connectors.cli", "worker", "--web-port", str(self.port)],
                env=settings_env(self.settings), stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_until(self.ready, timeout=ready_timeout, interval=0.2, what=f"worker ready (log {self.log_path})")
        return self

    def ready(self) -> bool:
        assert self.process.poll() is None, f"worker exited: {self.log_tail()}"
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> int:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        return self.process.returncode if self.process else 0

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
