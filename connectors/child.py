"""A freshstream verb run as a child process, for `freshstream dev`: Faust owns its own loop."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

from streams.settings import ENV_PREFIX, Settings

__all__ = ["ChildProcess", "child_environment"]


class ChildProcess:
    """`python -m connectors.cli <verb>` with the parent's settings, logging to a file."""

    def __init__(self, settings: Settings, args: list[str], log_path: Path) -> None:
        self.settings, self.args, self.log_path = settings, args, log_path
        self.process: subprocess.Popen | None = None

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "connectors.cli", *self.args], env=child_environment(self.settings),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)

    async def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.process.wait, timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)


def child_environment(settings: Settings) -> dict[str, str]:
    """The parent's environment with every setting spelled out, so the child builds the same."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if value not in ("", None):
            env[ENV_PREFIX + field.name.upper()] = str(value)
    env[ENV_PREFIX + "KAFKA_BOOTSTRAP"] = settings.bootstrap
    return env
