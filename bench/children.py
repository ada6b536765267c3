"""Child processes of a benchmark: pinned, killed with the script, stopped in reverse order."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["Children", "child_setup", "ROOT"]

ROOT = Path(__file__).resolve().parent.parent


def child_setup(cpus: set[int] | None):
    """Run in the child before exec: pin it, and have Linux kill it if the benchmark dies."""

    def setup() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass

    return setup


class Children:
    """Every process the benchmark started, stopped in reverse order on any exit."""

    def __init__(self, stop_timeout: float = 30.0) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.stop_timeout = stop_timeout

    def start(self, name: str, cmd: list[str], *, env: dict, log: Path, cwd: Path = ROOT,
              cpus: set[int] | None = None) -> subprocess.Popen:
        """A child in its own session (Ctrl-C reaches only the benchmark, which stops it in order)."""
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    preexec_fn=child_setup(cpus), start_new_session=True)
        self.procs.append((name, proc))
        return proc

    async def stop(self, proc: subprocess.Popen, timeout: float = 60.0) -> int:
        """SIGTERM one child and wait for it (SIGKILL after `timeout`); returns its exit code."""
        if proc.poll() is None:
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        self.procs = [(n, p) for n, p in self.procs if p is not proc]
        return proc.returncode

    def stop_all(self) -> None:
        """SIGTERM each child still running, SIGKILL after the stop timeout."""
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    print(f"bench: {name} (pid {proc.pid}) ignored SIGTERM; killing it", file=sys.stderr)
                    proc.kill()
                    proc.wait()
        self.procs.clear()
