"""Benchmark: how close does the ingress get to a bare aiohttp server, on one core?

Why: the ingress answers 202 only once Kafka has acknowledged the event (acks=all), and
checks an RSA signature on every request. This script shows what that costs, next to the
ceiling of a Python HTTP server on the same machine, measured in the same run so that the
ratio means something on a noisy machine. Goals: ingress >= 50% of the bare server's
requests/s, and ingress p99 < 50 ms.

What it does: starts an embedded broker (Tansu) on a free port, adds an integration with a
webhook public key, starts the ingress (`python -m connectors.cli ingress`) and a bare
aiohttp handler (this file with --serve-bare: reads the body, answers 202), both pinned to
one core, and drives each with `wrk --latency` pinned to another core. Every request is a
native Freshchat `message_create` webhook signed like Freshchat signs it (RSA PKCS#1 v1.5
SHA-256, base64 in X-Freshchat-Signature). Runs alternate (bare, ingress, bare, ingress, ...)
and the medians are reported. After every ingress run it checks that the raw topic grew by
at least as many records as wrk counted 2xx answers (partition ends read from fetch high
watermarks, because the embedded broker's ListOffsets lags).

Run it from the repository root (needs `wrk`: `apt-get install wrk`, and 2 CPUs):

    .venv/bin/python bench/ingress.py [--duration 10] [--connections 64] [--rounds 3]

It starts and stops everything itself, leaves nothing behind (also on Ctrl-C), and exits
2 when wrk or a second CPU is missing, 1 when the Kafka check fails, else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import shutil
import signal
import statistics
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from connectors.integrations.records import new_ingress_key, new_integration
from connectors.integrations.registry import IntegrationStore
from harness.load import INTEGRATION
from harness.processes import (BenchError, Ingress, Machine, Service, broker_settings, child_setup, run_bench,
                               start_broker, tree_pids)
from harness.report import CEILING_GOAL, met
from harness.topics import topic_end
from streams.settings import Settings
from tests.payloads import dumps, webhook_message

SCRIPT = Path(__file__).resolve()
DISTINCT_BODIES = 256  # distinct conversations, so records spread over the raw partitions
WRK_TIMEOUT = "15s"  # above the ingress's 10 s produce timeout: slow answers count as latency
P99_GOAL_MS = 50


@dataclass
class WrkResult:
    """The figures of one wrk run that this benchmark reports."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: str
    cpu_busy: dict[int, float]

    @property
    def ok_2xx(self) -> int:
        """Answers wrk counted as 2xx/3xx: the ones the ingress claims Kafka holds."""
        return self.requests - self.non_2xx


# --- child processes -------------------------------------------------------------------


def allowed_cpus(pid: int) -> str:
    """The CPUs a process may run on, as Linux reports them: proof that the pinning held."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    return "?"


# --- the signed requests ---------------------------------------------------------------


def signed_bodies(count: int) -> tuple[str, list[tuple[bytes, str]]]:
    """A fresh webhook key pair's public PEM, and `count` bodies with their signatures.

    The private key lives only in this process's memory; each body is a different
    conversation so the records spread over partitions as real traffic does.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    bodies = []
    for _ in range(count):
        body = dumps(webhook_message(conversation_id=str(uuid.uuid4())))
        signature = base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()
        bodies.append((body, signature))
    return pem, bodies


def write_wrk_script(workdir: Path, bodies: list[tuple[bytes, str]]) -> Path:
    """A wrk Lua script that cycles through the signed bodies (one `signature<TAB>body` a line)."""
    data = workdir / "requests.tsv"
    data.write_bytes(b"".join(sig.encode() + b"\t" + body + b"\n" for body, sig in bodies))
    script = workdir / "signed_post.lua"
    script.write_text(f"""-- written by bench/ingress.py: POST signed Freshchat webhooks
local requests, count, i = {{}}, 0, 0

function init(args)
  local file = assert(io.open("{data}", "rb"))
  for line in file:lines() do
    local signature, body = line:match("^([^\\t]+)\\t(.*)$")
    count = count + 1
    requests[count] = wrk.format("POST", nil,
      {{["Content-Type"] = "application/json", ["X-Freshchat-Signature"] = signature}}, body)
  end
  file:close()
end

function request()
  i = i % count + 1
  return requests[i]
end
""")
    return script


def smoke_post(url: str, body: bytes, signature: str) -> None:
    """One signed POST before any load: a 401 or 400 here would make every figure meaningless."""
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "X-Freshchat-Signature": signature})
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    if status != 202:
        raise BenchError(f"a signed POST to {url} got {status}, not 202; nothing to measure")


# --- Kafka -----------------------------------------------------------------------------


async def put_integration(settings: Settings, pem: str) -> None:
    record = new_integration(INTEGRATION, "acme.freshchat.com", new_ingress_key(), webhook_public_key=pem)
    async with IntegrationStore(settings) as store:  # the ingress key is discarded: only signatures here
        await store.put(record)


# --- wrk -------------------------------------------------------------------------------

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _latency_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text).groups()
    return float(number) * _UNIT_MS[unit]


def parse_wrk(output: str, cpu_busy: dict[int, float]) -> WrkResult:
    """The figures of `wrk --latency` text output; a missing line is an error, not a zero."""
    def find(pattern: str) -> re.Match:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise BenchError(f"wrk output has no line matching {pattern!r}:\n{output}")
        return match

    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)  # only printed when > 0
    errors = re.search(r"Socket errors: (.*)$", output, re.MULTILINE)  # likewise
    return WrkResult(rps=float(find(r"^Requests/sec:\s+([\d.]+)").group(1)),
                     p50_ms=_latency_ms(find(r"^\s+50%\s+(\S+)").group(1)),
                     p99_ms=_latency_ms(find(r"^\s+99%\s+(\S+)").group(1)),
                     requests=int(find(r"^\s+(\d+) requests in").group(1)),
                     non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
                     socket_errors=errors.group(1).strip() if errors else "none",
                     cpu_busy=cpu_busy)


def _cpu_times() -> dict[int, tuple[int, int]]:
    """(busy, total) jiffies per CPU from /proc/stat."""
    times = {}
    for line in Path("/proc/stat").read_text().splitlines():
        match = re.match(r"cpu(\d+) (.*)", line)
        if match:
            fields = [int(x) for x in match.group(2).split()]
            idle = fields[3] + fields[4]  # idle + iowait
            times[int(match.group(1))] = (sum(fields[:8]) - idle, sum(fields[:8]))
    return times


def _busy(before: dict, after: dict, cpus: list[int]) -> dict[int, float]:
    """Share of each CPU that was busy between two samples: is the server (or wrk) saturated?"""
    result = {}
    for cpu in cpus:
        busy = after[cpu][0] - before[cpu][0]
        total = after[cpu][1] - before[cpu][1]
        result[cpu] = busy / total if total else 0.0
    return result


async def run_wrk(url: str, script: Path, args, cpu: int, duration: int, cpus: list[int]) -> WrkResult:
    """One wrk run pinned to the client CPU; returns its parsed figures."""
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{duration}s", "--latency",
           "--timeout", WRK_TIMEOUT, "-s", str(script), url]
    before = _cpu_times()
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                preexec_fn=child_setup({cpu}))
    try:
        out, err = await asyncio.wait_for(proc.communicate(), duration + 60)
    except asyncio.TimeoutError:
        raise BenchError(f"wrk did not finish within {duration + 60} s") from None
    finally:
        if proc.returncode is None:  # timed out or interrupted
            proc.kill()
            await proc.wait()
    busy = _busy(before, _cpu_times(), cpus)
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    if proc.returncode != 0:
        raise BenchError(f"wrk exited with {proc.returncode}: {stderr.strip() or stdout.strip()}")
    return parse_wrk(stdout, busy)


# --- the bare server (this file with --serve-bare) --------------------------------------


def serve_bare(port: int) -> int:
    """The ceiling: aiohttp as the ingress runs it (same limits, logger, backlog, event loop), doing nothing.

    It reads the body and answers 202, so the gap to the ingress is the cost of auth,
    validation, the envelope and awaiting Kafka's ack.
    """
    import logging

    from aiohttp import web

    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def post(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202)

    async def ready(request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def main() -> None:
        app = web.Application(client_max_size=settings.max_body_bytes)
        app.router.add_post("/webhooks/freshchat/{integration}", post)
        app.router.add_get("/readyz", ready)
        runner = web.AppRunner(app, access_log=logging.getLogger("freshstream.access"))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        print("bare server running", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    from connectors.cli.main import fast_loop_factory  # the event loop the ingress runs on, for a fair ceiling

    with asyncio.Runner(loop_factory=fast_loop_factory()) as runner:
        runner.run(main())
    return 0


# --- the benchmark ---------------------------------------------------------------------


class BareServer(Service):
    """This file with --serve-bare on the server CPU: the ceiling the ingress is measured against."""

    def command(self) -> list[str]:
        return [sys.executable, str(SCRIPT), "--serve-bare", str(self.port)]


@dataclass
class Target:
    """One server under test: its name, its POST URL and, for the ingress, the Kafka settings."""

    name: str
    url: str
    kafka: Settings | None = None


async def start_servers(machine: Machine) -> tuple[Target, Target, list[tuple[bytes, str]]]:
    """Broker, integration, ingress and bare server, each ready before the next step."""
    settings = broker_settings(machine, log_level="WARNING")
    await start_broker(machine, settings)  # on the client CPU with this script, never the server's
    pem, bodies = signed_bodies(DISTINCT_BODIES)
    await put_integration(settings, pem)
    ingress = Ingress(machine, settings, "ingress").start()
    await ingress.wait_ready()
    bare = BareServer(machine, settings, "bare").start()
    await bare.wait_ready()
    for name, proc in machine.children.procs:
        below = "".join(f", child pid {d} CPUs {allowed_cpus(d)}" for d in tree_pids(proc.pid)[1:])
        print(f"  {name:<8} pid {proc.pid:<7} CPUs {allowed_cpus(proc.pid)}{below}")
    path = f"/webhooks/freshchat/{INTEGRATION}"
    return Target("bare", f"{bare.url}{path}"), Target("ingress", f"{ingress.url}{path}", settings), bodies


async def measure(target: Target, script: Path, args, client_cpu: int,
                  cpus: list[int]) -> tuple[WrkResult, str | None]:
    """One measured run; for the ingress also the Kafka check, as (result, check line or None)."""
    before = await topic_end(target.kafka, target.kafka.raw_topic) if target.kafka else 0
    result = await run_wrk(target.url, script, args, client_cpu, args.duration, cpus)
    if target.kafka is None:
        return result, None
    await asyncio.sleep(0.5)  # requests in flight when wrk stopped may still land; they only add records
    added = await topic_end(target.kafka, target.kafka.raw_topic) - before
    verdict = "OK" if result.ok_2xx <= added else "FAILED"
    return result, f"kafka check: 2xx {result.ok_2xx} <= records added to the raw topic {added}: {verdict}"


def _row(label: str, r: WrkResult, cpus: list[int]) -> str:
    busy = " ".join(f"cpu{c} {r.cpu_busy.get(c, 0) * 100:3.0f}%" for c in cpus)
    return (f"  {label:<16} {r.rps:>9.0f} req/s  p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms  "
            f"non-2xx {r.non_2xx:<5} socket errors: {r.socket_errors:<6} busy: {busy}")


def report(results: dict[str, list[WrkResult]], failures: list[str]) -> None:
    """Medians of both servers, the ratio, and the goals next to them."""
    med = {name: (statistics.median(r.rps for r in rs), statistics.median(r.p50_ms for r in rs),
                  statistics.median(r.p99_ms for r in rs)) for name, rs in results.items()}
    rounds = len(results["bare"])
    print(f"\nmedian of {rounds} run(s) each:")
    for name, (rps, p50, p99) in med.items():
        print(f"  {name:<8} {rps:>9.0f} req/s  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms")
    ratio = med["ingress"][0] / med["bare"][0]
    p99 = med["ingress"][2]
    print(f"  ratio ingress/bare req/s: {ratio:.2f}   goal >= {CEILING_GOAL:.2f}: {met(ratio >= CEILING_GOAL)}")
    print(f"  ingress p99: {p99:.2f} ms   goal < {P99_GOAL_MS} ms: {met(p99 < P99_GOAL_MS)}")
    non_2xx = sum(r.non_2xx for r in results["ingress"])
    print(f"  ingress non-2xx responses (all runs): {non_2xx}")
    print("  kafka check (every 2xx is on the raw topic): "
          + ("OK in every run" if not failures else "FAILED: " + "; ".join(failures)))


async def benchmark(args, machine: Machine) -> int:
    """Start everything, then alternate bare and ingress runs so both see the same machine."""
    (server_cpu,), client_cpu = machine.subject_cpus, min(machine.other_cpus)
    cpus = [server_cpu, client_cpu]
    print(f"freshstream ingress benchmark: signed single-event POSTs, {args.connections} connections, "
          f"{args.duration} s per run, {args.rounds} round(s) of bare then ingress")
    print(f"servers pinned to CPU {server_cpu}; wrk ({args.threads} thread(s)) on CPU {client_cpu}, broker and "
          f"this script on CPU {','.join(map(str, sorted(machine.other_cpus)))}; Python {sys.version.split()[0]}")
    bare, ingress, bodies = await start_servers(machine)
    smoke_post(ingress.url, *bodies[0])
    script = write_wrk_script(machine.workdir, bodies)
    for target in (bare, ingress) if args.warmup > 0 else ():  # connections, caches, producer
        await run_wrk(target.url, script, args, client_cpu, args.warmup, cpus)
    results: dict[str, list[WrkResult]] = {"bare": [], "ingress": []}
    failures = []
    for n in range(1, args.rounds + 1):
        for target in (bare, ingress):
            result, check = await measure(target, script, args, client_cpu, cpus)
            print(_row(f"round {n} {target.name}", result, cpus), flush=True)
            if check:
                print(f"      {check}", flush=True)
                failures += [f"round {n}: {check}"] if check.endswith("FAILED") else []
            results[target.name].append(result)
    report(results, failures)
    return 1 if failures else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections (default 64)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="bare+ingress pairs; medians are reported (default 3)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load per server (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads, all on the client CPU (default 1)")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_bare is not None:
        return serve_bare(args.serve_bare)
    if shutil.which("wrk") is None:
        print("bench/ingress.py: wrk is not installed; install it with 'apt-get install wrk'", file=sys.stderr)
        return 2
    if len(os.sched_getaffinity(0)) < 2:
        print("bench/ingress.py: needs 2 CPUs (one for the server, one for wrk); this process has 1",
              file=sys.stderr)
        return 2
    return run_bench("bench/ingress.py", lambda machine: benchmark(args, machine), prefix="ingress")


if __name__ == "__main__":
    sys.exit(main())
