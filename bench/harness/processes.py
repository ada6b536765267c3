"""Child processes of a benchmark: the broker and the services it measures, pinned, always stopped.

Every child runs in its own session (Ctrl-C reaches only the benchmark, which stops the
children in reverse order), is tied to the benchmark by PR_SET_PDEATHSIG (Linux kills it
if the benchmark is killed outright), and writes its output to a log in the run's
temporary directory. `run_bench` is the `main` every script shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from connectors.cli.dev import child_environment
from connectors.kafka.broker import free_port
from harness import WORK_TREE
from streams.settings import Settings

__all__ = ["BenchError", "Children", "child_setup", "Machine", "cpu_split", "tail", "wait_for", "bench_env",
           "broker_settings", "start_broker", "Code", "CURRENT", "Service", "Worker", "Ingress", "vm_rss",
           "tree_pids", "tree_rss", "tree_cpu", "run_bench"]

READY_TIMEOUT_S = 180.0


class BenchError(RuntimeError):
    """A step failed or timed out; the message says which and where its log is."""


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

    def start(self, name: str, cmd: list[str], *, env: dict, log: Path, cwd: Path = WORK_TREE,
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
        self.forget(proc)
        return proc.returncode

    def forget(self, proc: subprocess.Popen) -> None:
        """No longer ours to stop (it was stopped, or killed on purpose)."""
        self.procs = [(n, p) for n, p in self.procs if p is not proc]

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


@dataclass
class Machine:
    """Where things run: the temp dir, the CPUs, the children started so far, what to undo after them."""

    workdir: Path
    children: Children
    subject_cpus: set[int] | None  # what is measured: the ceiling loops, the workers, the servers
    other_cpus: set[int] | None  # the broker and this script
    after: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def later(self, context):
        """Enter a context now and leave it once every child is stopped (e.g. REF's git worktree)."""
        return self.after.enter_context(context)

    def pinning(self, subject: str) -> str:
        return (f"{subject} on CPU {sorted(self.subject_cpus)}, broker and this script on CPU "
                f"{sorted(self.other_cpus)}" if self.subject_cpus else "no CPU pinning (one CPU)")


def cpu_split() -> tuple[set[int] | None, set[int] | None]:
    """Subject on the first allowed CPU, the rest for broker and bench; no pinning on one CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


def tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return "\n".join(text[-lines:]) or "(empty log)"


async def wait_for(condition, timeout: float, what: str, interval: float = 0.1):
    """Poll an async condition until it returns something truthy; BenchError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


def bench_env(settings: Settings, root: Path = WORK_TREE) -> dict:
    """The child's environment: these settings spelled out, and the tree at `root` importable."""
    env = child_environment(settings)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return env


def broker_settings(machine: Machine, **changes) -> Settings:
    """Settings for an embedded broker on a free port with its data in the run's temp dir."""
    port = free_port()
    return Settings(kafka_bootstrap=f"127.0.0.1:{port}", broker_port=port, data_dir=machine.workdir / "data",
                    **changes)


async def start_broker(machine: Machine, settings: Settings) -> subprocess.Popen:
    """`python -m connectors.cli broker` on the settings' port, once it says it is running."""
    log = machine.workdir / "broker.log"
    proc = machine.children.start("broker", [sys.executable, "-m", "connectors.cli", "broker",
                                             "--port", str(settings.broker_port)],
                                  env=bench_env(settings.replace(kafka_bootstrap="", log_level="WARNING")),
                                  log=log, cpus=machine.other_cpus)

    async def running() -> bool:
        if proc.poll() is not None:
            raise BenchError(f"the broker exited with {proc.returncode}:\n{tail(log)}")
        return "freshstream broker running" in log.read_text(errors="replace")

    await wait_for(running, 60, f"the broker (log {log})", interval=0.05)
    return proc


@dataclass(frozen=True)
class Code:
    """The code a worker runs: the tree its PYTHONPATH points at, a label to print, a slug for names."""

    label: str
    root: Path
    slug: str


CURRENT = Code("current", WORK_TREE, "cur")


class Service:
    """A `python -m connectors.cli VERB --PORT-FLAG PORT` child on the subject CPU: start, /readyz, RSS, stop."""

    verb: list[str] = []  # the CLI verb and its port flag

    def __init__(self, machine: Machine, settings: Settings, name: str, code: Code = CURRENT) -> None:
        self.machine, self.settings, self.name, self.code = machine, settings, name, code
        self.port = free_port()
        self.log = machine.workdir / f"{name}.log"
        self.cwd = machine.workdir / name  # a worker's Faust <app id>-data directory goes here
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    def command(self) -> list[str]:
        return [sys.executable, "-m", "connectors.cli", *self.verb, str(self.port)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.cwd.mkdir(exist_ok=True)
        self.started_at = time.time()
        self.proc = self.machine.children.start(self.name, self.command(), env=bench_env(self.settings, self.code.root),
                                                log=self.log, cwd=self.cwd, cpus=self.machine.subject_cpus)
        return self

    async def _get(self, session: aiohttp.ClientSession, path: str) -> tuple[int | None, str]:
        if self.proc.poll() is not None:
            raise BenchError(f"{self.name} exited with {self.proc.returncode}:\n{tail(self.log)}")
        try:
            async with session.get(f"{self.url}{path}", timeout=aiohttp.ClientTimeout(total=5)) as answer:
                return answer.status, await answer.text()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return None, ""

    async def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> float:
        """Poll /readyz every 50 ms; the wall-clock time of the first request answered 200."""
        async with aiohttp.ClientSession() as session:
            async def ready() -> float | None:
                sent = time.time()
                status, _ = await self._get(session, "/readyz")
                return sent if status == 200 else None

            return await wait_for(ready, timeout, f"{self.name} /readyz (log {self.log})", interval=0.05)

    def rss(self) -> int:
        """VmRSS in bytes."""
        rss = vm_rss(self.proc.pid)
        if rss is None:
            raise BenchError(f"no VmRSS for pid {self.proc.pid}")
        return rss

    async def settled_rss(self, timeout: float = 20.0) -> int:
        """RSS once it stops moving: three samples 0.5 s apart within 1%, else the last at the deadline."""
        samples: list[int] = []

        async def settled() -> bool:
            samples.append(self.rss())
            last = samples[-3:]
            return len(last) == 3 and max(last) - min(last) <= 0.01 * max(last)

        try:
            await wait_for(settled, timeout, "a steady RSS", interval=0.5)
        except BenchError:
            pass  # still moving: the last sample is the answer
        return samples[-1]

    async def stop(self) -> int:
        return await self.machine.children.stop(self.proc)


class Worker(Service):
    """A `freshstream worker` child; its verdict counters from /metrics."""

    verb = ["worker", "--web-port"]

    async def counters(self) -> dict[str, float]:
        """Events by verdict, plus skipped records, from /metrics (empty if it did not answer)."""
        async with aiohttp.ClientSession() as session:
            status, text = await self._get(session, "/metrics")
        totals: dict[str, float] = {}
        for line in text.splitlines() if status == 200 else []:
            name, _, value = line.rpartition(" ")
            if name.startswith("freshstream_worker_events_total"):
                verdict = name.split('verdict="', 1)[1].split('"', 1)[0]
                totals[verdict] = totals.get(verdict, 0) + float(value)
            elif name.startswith("freshstream_worker_skipped_total"):
                totals["skipped"] = totals.get("skipped", 0) + float(value)
        return totals

    async def wait_counted(self, expected: int, timeout: float, *, applied_only: bool = False) -> dict:
        """Poll /metrics until the worker has taken `expected` raw records (or applied that many)."""
        async def done() -> dict | None:
            totals = await self.counters()
            seen = totals.get("applied", 0) if applied_only else sum(totals.values())
            return totals if seen >= expected else None

        what = f"{self.name} to {'apply' if applied_only else 'take'} {expected:,} events (log {self.log})"
        return await wait_for(done, timeout, what, interval=0.25)


class Ingress(Service):
    """A `freshstream ingress` child: ready once it follows the integrations and reaches Kafka."""

    verb = ["ingress", "--port"]


def vm_rss(pid: int) -> int | None:
    """VmRSS in bytes, from /proc/<pid>/status (None once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    except (OSError, IndexError, ValueError):
        return 0.0


def tree_pids(pid: int) -> list[int]:
    """The process and all its descendants (the embedded broker is a wrapper around Tansu)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                pass
    return found


def tree_rss(pid: int) -> int:
    """VmRSS in bytes of a process and its descendants (0 for those already gone)."""
    return sum(vm_rss(member) or 0 for member in tree_pids(pid))


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by a process and its live descendants."""
    return sum(cpu_seconds(member) for member in tree_pids(pid))


def run_bench(script: str, bench, *, prefix: str, pin: bool = True, keep_failed: bool = False) -> int:
    """The `main` of every benchmark: `await bench(machine)` and its exit status, everything stopped after.

    With `pin` and 2+ CPUs the subject CPU is kept for what is measured and this script
    moves to the others (cpu_split). The run's temp dir is removed at the end, unless
    `keep_failed` and the run did not exit 0 (its logs are kept for a look). Exit status:
    the benchmark's, 1 on BenchError, 130 on Ctrl-C, 143 on SIGTERM.
    """
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the children
    subject, other = cpu_split() if pin else (None, None)
    if other:
        os.sched_setaffinity(0, other)
    workdir = Path(tempfile.mkdtemp(prefix=f"freshstream-bench-{prefix}-"))
    machine = Machine(workdir, Children(), subject, other)
    status = 1
    try:
        status = asyncio.run(bench(machine))
        return status
    except KeyboardInterrupt:
        print("\nbench: interrupted; stopping everything", file=sys.stderr)
        status = 130
        return status
    except BenchError as exc:
        kept = f" (logs kept in {workdir})" if keep_failed else ""
        print(f"{script}: error: {exc}{kept}", file=sys.stderr)
        return 1
    finally:
        machine.children.stop_all()
        machine.after.close()
        if status == 0 or not keep_failed:
            shutil.rmtree(workdir, ignore_errors=True)
