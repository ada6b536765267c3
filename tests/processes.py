"""freshstream processes started by tests the way a user starts them: `python -m connectors.cli …`.

Their logs go to files at the level the settings say (DEBUG in the suite); stop()
fails the test if any secret a test made appears in them.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx

from connectors.cli.dev import child_environment
from connectors.kafka.broker import free_port
from streams.settings import Settings
from tests.kafka_records import SECRETS, wait_until


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process build these same settings."""
    return child_environment(settings)


class FreshstreamProcess:
    """A `freshstream <verb>` child process that serves /readyz on `port`."""

    verb: list[str] = []

    def __init__(self, settings: Settings, log_dir: Path, name: str) -> None:
        self.settings, self.port = settings, free_port()
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout: float = 90.0):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "connectors.cli", *self.verb, "--port" if self.verb[0] == "ingress"
                 else "--web-port", str(self.port)],
                env=settings_env(self.settings), stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_until(self.ready, timeout=ready_timeout, interval=0.2, what=f"{self.verb[0]} ready (log {self.log_path})")
        return self

    def ready(self) -> bool:
        assert self.process.poll() is None, f"{self.verb[0]} exited: {self.log_tail()}"
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=5).text

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> int:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        self.assert_no_secrets()
        self.assert_no_crashes()
        return self.process.returncode if self.process else 0

    def assert_no_secrets(self) -> None:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        leaked = [secret[:8] + "…" for secret in SECRETS if secret in text]
        assert not leaked, f"secrets reached {self.log_path}: {leaked}"

    def assert_no_crashes(self) -> None:
        """A crashed Faust agent is restarted by its supervisor, so a test can pass
        around one; the log is where it shows."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        crashes = [line[:300] for line in text.splitlines() if "Crashed reason=" in line]
        assert not crashes, f"{self.log_path}: {crashes}"

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class WorkerProcess(FreshstreamProcess):
    """`freshstream worker`, ready once its tables are recovered."""

    verb = ["worker"]

    def __init__(self, settings: Settings, log_dir: Path, name: str = "worker") -> None:
        super().__init__(settings, log_dir, name)


class IngressProcess(FreshstreamProcess):
    """`freshstream ingress` on its own core, for tests that post a lot."""

    verb = ["ingress"]

    def __init__(self, settings: Settings, log_dir: Path, name: str = "ingress") -> None:
        super().__init__(settings, log_dir, name)


class InjixoSinkProcess(FreshstreamProcess):
    """`freshstream deliver injixo --url <fake> --settle <s>`, ready once it holds partitions."""

    def __init__(self, settings: Settings, log_dir: Path, url: str, settle: float = 0.0,
                 name: str = "deliver-injixo") -> None:
        super().__init__(settings, log_dir, name)
        self.verb = ["deliver", "injixo", "--url", url, "--settle", str(settle)]


class CsvSinkProcess(FreshstreamProcess):
    """`freshstream deliver csv --dir DIR`, ready once it has read the topics to their ends."""

    def __init__(self, settings: Settings, log_dir: Path, directory: Path, *options: str,
                 name: str = "deliver-csv") -> None:
        super().__init__(settings, log_dir, name)
        self.verb = ["deliver", "csv", "--dir", str(directory), *options]
