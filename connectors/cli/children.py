"""Processes `freshstream dev` starts and watches, so that a crash at 3 a.m. is said and mended.

A child is `python -m connectors.cli <verb>` with the parent's settings and its own log
file. It dies with its parent (PR_SET_PDEATHSIG), so even a SIGKILL of `dev` leaves no
freshstream process behind. A Supervisor restarts it when it exits, with backoff, and
gives up (one error line) when it keeps failing soon after each start: then something
outside it is wrong, and restarting forever would only hide that.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from connectors.kafka.broker import die_with_parent
from streams.errors import ChildError
from streams.settings import ENV_PREFIX, Settings, open_log

__all__ = ["ChildProcess", "Supervisor", "child_environment", "exit_text", "last_error_line"]

POLL_SECONDS = 0.1  # how soon an exit is noticed; a thread per wait would outlive a cancelled watch


class ChildProcess:
    """`python -m connectors.cli <verb>` with the parent's settings, logging to a file; startable again."""

    def __init__(self, settings: Settings, args: list[str], log_path: Path,
                 command: list[str] | None = None) -> None:
        self.settings, self.args, self.log_path = settings, args, log_path
        self.command = command or [sys.executable, "-m", "connectors.cli", *args]
        self.process: subprocess.Popen | None = None
        self.log_offset = 0  # where this run's lines start in the log

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def start(self) -> None:
        """Synchronous on purpose: the fork must happen on the loop's thread, whose death
        (with the process) is what PR_SET_PDEATHSIG watches."""
        with open_log(self.log_path) as log:
            self.log_offset = log.tell()
            self.process = subprocess.Popen(
                self.command, env=child_environment(self.settings), stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True,  # Ctrl-C reaches dev, which stops it in order
                # SIGKILL: a parent that is gone waits for no clean stop, and the broker goes with it
                preexec_fn=lambda: die_with_parent(signal.SIGKILL))

    async def wait(self) -> int:
        while self.process.poll() is None:
            await asyncio.sleep(POLL_SECONDS)
        return self.process.returncode

    async def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.process.wait, timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)

    def last_error(self) -> str | None:
        return last_error_line(self.log_path, self.log_offset)


def child_environment(settings: Settings) -> dict[str, str]:
    """The parent's environment with every setting spelled out, so the child builds the same."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if value not in ("", None):
            env[ENV_PREFIX + field.name.upper()] = str(value)
    env[ENV_PREFIX + "KAFKA_BOOTSTRAP"] = settings.bootstrap
    return env


def exit_text(code: int) -> str:
    """`code 1`, or `code -9 (SIGKILL)`: a negative code is a signal, named for the reader."""
    if code < 0:
        try:
            return f"code {code} ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return f"code {code}"


ERROR_MARKS = ("freshstream: error:", " ERROR ", " CRITICAL ", "Error:", "Traceback")


def last_error_line(path: Path, offset: int = 0, limit: int = 200) -> str | None:
    """The last line of a log (from `offset`) that reads as an error, shortened; None if there is none.

    The worker's own failures end as `freshstream: error: …`, which is the line wanted; a
    traceback's last line names the exception, so a line after `Traceback` counts too.
    """
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            lines = log.read()[-256 * 1024:].decode(errors="replace").splitlines()
    except OSError:
        return None
    found, in_traceback = None, False
    for line in lines:
        text = line.strip()
        if not text:
            continue
        if text.startswith("Traceback"):
            in_traceback = True
            continue
        if any(mark in f" {text} " for mark in ERROR_MARKS) or (in_traceback and not line[:1].isspace()):
            found, in_traceback = text, False
    if found and len(found) > limit:
        found = found[:limit - 1] + "…"
    return found


class Supervisor:
    """Keeps one child running: says when it starts, exits (code, last error) and restarts.

    Backoff doubles from `first_delay` to `max_delay` while the child keeps failing within
    `quick_seconds` of its start; a run longer than that starts the count afresh. After
    `give_up` quick failures in a row run() raises ChildError, for `dev` to end with.
    """

    def __init__(self, name: str, child: ChildProcess, say: Callable[[str], None], *,
                 first_delay: float = 1.0, max_delay: float = 30.0, quick_seconds: float = 30.0,
                 give_up: int = 5) -> None:
        self.name, self.child, self.say = name, child, say
        self.first_delay, self.max_delay = first_delay, max_delay
        self.quick_seconds, self.give_up = quick_seconds, give_up
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.child.start()
        self.say(f"{self.name} started (pid {self.child.pid}, log {self.child.log_path})")
        self.task = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        quick_failures = 0
        while True:
            started = time.monotonic()
            code = await self.child.wait()
            ran = time.monotonic() - started
            quick_failures = quick_failures + 1 if ran < self.quick_seconds else 1
            error = self.child.last_error() or "no error in its log"
            what = f"{self.name} (pid {self.child.pid}) exited with {exit_text(code)} after {ran:.0f} s: {error}"
            if quick_failures >= self.give_up:
                raise ChildError(f"{what}; it failed {quick_failures} times in a row within "
                                 f"{self.quick_seconds:.0f} s of starting, so freshstream dev gave up "
                                 f"(log: {self.child.log_path})")
            delay = min(self.max_delay, self.first_delay * 2 ** (quick_failures - 1))
            self.say(f"{what}; restarting in {delay:g} s")
            await asyncio.sleep(delay)
            await self.child.start()
            self.say(f"{self.name} restarted (pid {self.child.pid})")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.child.stop()
