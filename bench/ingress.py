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
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from bench/: import the work tree's packages

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding, rsa  # noqa: E402

from children import Children, child_setup  # noqa: E402  (bench/children.py, beside this script)
from streams.settings import ENV_PREFIX, Settings  # noqa: E402

INTEGRATION = "bench"
DISTINCT_BODIES = 256  # distinct conversations, so records spread over the raw partitions
WRK_TIMEOUT = "15s"  # above the ingress's 10 s produce timeout: slow answers count as latency


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


def child_env(data_dir: Path, **settings: str) -> dict:
    """The caller's environment without its FRESHSTREAM_* settings, plus this run's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update({ENV_PREFIX + "DATA_DIR": str(data_dir), ENV_PREFIX + "LOG_LEVEL": "WARNING"})
    env.update({ENV_PREFIX + k.upper(): v for k, v in settings.items()})
    return env


def allowed_cpus(pid: int) -> str:
    """The CPUs a process may run on, as Linux reports them: proof that the pinning held."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    return "?"


def _descendants(pid: int) -> list[int]:
    """Children of a process, and theirs: the Tansu binary runs under the broker CLI."""
    try:
        kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return [d for k in kids for d in (k, *_descendants(k))]


def _tail(log: Path, lines: int = 5) -> str:
    text = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return "\n".join(text[-lines:]) or "(empty log)"


def wait_for_log_line(proc: subprocess.Popen, log: Path, needle: str, timeout: float) -> None:
    """Wait until a child says it is running, so its topics exist before anyone uses them."""
    deadline = time.monotonic() + timeout
    while needle not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{log.stem} did not start (exit {proc.poll()}):\n{_tail(log)}")
        time.sleep(0.05)


def wait_for_ready(proc: subprocess.Popen, url: str, log: Path, timeout: float = 30.0) -> None:
    """Poll /readyz until it answers 200: broker reachable and integrations loaded."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{log.stem} not ready at {url} (exit {proc.poll()}):\n{_tail(log)}")
        time.sleep(0.1)


# --- the signed requests ---------------------------------------------------------------


def signed_bodies(count: int) -> tuple[str, list[tuple[bytes, str]]]:
    """A fresh webhook key pair's public PEM, and `count` bodies with their signatures.

    The private key lives only in this process's memory; each body is a different
    conversation so the records spread over partitions as real traffic does.
    """
    from tests.payloads import dumps, webhook_message

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
        raise RuntimeError(f"a signed POST to {url} got {status}, not 202; nothing to measure")


# --- Kafka -----------------------------------------------------------------------------


async def _put_integration(settings: Settings, pem: str) -> None:
    from connectors.integrations.records import new_ingress_key, new_integration
    from connectors.integrations.registry import IntegrationStore

    record = new_integration(INTEGRATION, "acme.freshchat.com", new_ingress_key(), webhook_public_key=pem)
    async with IntegrationStore(settings) as store:  # the ingress key is discarded: only signatures here
        await store.put(record)


async def _raw_topic_end(settings: Settings, timeout: float = 15.0) -> int:
    """Records on the raw topic: the sum of its partitions' fetch high watermarks.

    Not end_offsets(): the embedded broker's ListOffsets can lag the true end. Fetching
    from the beginning gets one fetch response per partition, which carries the end.
    """
    from aiokafka import TopicPartition

    from connectors.kafka.clients import make_consumer

    consumer = make_consumer(settings, fetch_max_wait_ms=100, max_partition_fetch_bytes=1024)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(settings.raw_topic, p)
               for p in sorted(consumer.partitions_for_topic(settings.raw_topic) or {0})]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while any(consumer.highwater(tp) is None for tp in tps):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no fetch high watermark for {settings.raw_topic} within {timeout} s")
            await consumer.getmany(*tps, timeout_ms=200, max_records=1)
        return sum(consumer.highwater(tp) for tp in tps)
    finally:
        await consumer.stop()


def raw_topic_end(settings: Settings) -> int:
    return asyncio.run(_raw_topic_end(settings))


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
            raise RuntimeError(f"wrk output has no line matching {pattern!r}:\n{output}")
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


def run_wrk(url: str, script: Path, args, cpu: int, duration: int, cpus: list[int]) -> WrkResult:
    """One wrk run pinned to the client CPU; returns its parsed figures."""
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{duration}s", "--latency",
           "--timeout", WRK_TIMEOUT, "-s", str(script), url]
    before = _cpu_times()
    done = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=child_setup({cpu}),
                          timeout=duration + 60)
    busy = _busy(before, _cpu_times(), cpus)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return parse_wrk(done.stdout, busy)


# --- the bare server (this file with --serve-bare) --------------------------------------


def serve_bare(port: int) -> int:
    """The ceiling: aiohttp as the ingress runs it (same limits, logger, backlog), doing nothing.

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

    asyncio.run(main())
    return 0


# --- the benchmark ---------------------------------------------------------------------


@dataclass
class Target:
    """One server under test: its name, its POST URL and, for the ingress, the Kafka settings."""

    name: str
    url: str
    kafka: Settings | None = None


def start_servers(children: Children, workdir: Path, server_cpu: int) -> tuple[Target, Target, list[tuple[bytes, str]]]:
    """Broker, integration, ingress and bare server, each ready before the next step."""
    from connectors.kafka.broker import free_port

    data_dir, py = workdir / "data", sys.executable
    data_dir.mkdir()
    broker_port, ingress_port, bare_port = free_port(), free_port(), free_port()
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{broker_port}", data_dir=data_dir)

    log = workdir / "broker.log"  # inherits this script's CPU (the client one), never the server's
    broker = children.start("broker", [py, "-m", "connectors.cli", "broker", "--port", str(broker_port)],
                            cpus=None, env=child_env(data_dir), log=log)
    wait_for_log_line(broker, log, "freshstream broker running", timeout=60)

    pem, bodies = signed_bodies(DISTINCT_BODIES)
    asyncio.run(_put_integration(settings, pem))

    log = workdir / "ingress.log"
    ingress = children.start("ingress", [py, "-m", "connectors.cli", "ingress", "--port", str(ingress_port)],
                             cpus={server_cpu}, log=log,
                             env=child_env(data_dir, kafka_bootstrap=settings.kafka_bootstrap))
    wait_for_ready(ingress, f"http://127.0.0.1:{ingress_port}", log)

    log = workdir / "bare.log"
    bare = children.start("bare", [py, str(Path(__file__).resolve()), "--serve-bare", str(bare_port)],
                          cpus={server_cpu}, env=child_env(data_dir), log=log)
    wait_for_ready(bare, f"http://127.0.0.1:{bare_port}", log)

    for name, proc in children.procs:
        below = "".join(f", child pid {d} CPUs {allowed_cpus(d)}" for d in _descendants(proc.pid))
        print(f"  {name:<8} pid {proc.pid:<7} CPUs {allowed_cpus(proc.pid)}{below}")
    path = f"/webhooks/freshchat/{INTEGRATION}"
    return (Target("bare", f"http://127.0.0.1:{bare_port}{path}"),
            Target("ingress", f"http://127.0.0.1:{ingress_port}{path}", settings), bodies)


def measure(target: Target, script: Path, args, client_cpu: int, cpus: list[int]) -> tuple[WrkResult, str | None]:
    """One measured run; for the ingress also the Kafka check, as (result, check line or None)."""
    before = raw_topic_end(target.kafka) if target.kafka else 0
    result = run_wrk(target.url, script, args, client_cpu, args.duration, cpus)
    if target.kafka is None:
        return result, None
    time.sleep(0.5)  # requests in flight when wrk stopped may still land; they only add records
    added = raw_topic_end(target.kafka) - before
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
    print(f"  ratio ingress/bare req/s: {ratio:.2f}   goal >= 0.50: {'met' if ratio >= 0.5 else 'NOT met'}")
    print(f"  ingress p99: {p99:.2f} ms   goal < 50 ms: {'met' if p99 < 50 else 'NOT met'}")
    non_2xx = sum(r.non_2xx for r in results["ingress"])
    print(f"  ingress non-2xx responses (all runs): {non_2xx}")
    print("  kafka check (every 2xx is on the raw topic): "
          + ("OK in every run" if not failures else "FAILED: " + "; ".join(failures)))


def benchmark(args, workdir: Path, children: Children) -> int:
    """Start everything, then alternate bare and ingress runs so both see the same machine."""
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = cpus[0], cpus[1]
    os.sched_setaffinity(0, {client_cpu})  # this script and the broker stay off the server's CPU
    print(f"freshstream ingress benchmark: signed single-event POSTs, {args.connections} connections, "
          f"{args.duration} s per run, {args.rounds} round(s) of bare then ingress")
    print(f"servers pinned to CPU {server_cpu}; wrk ({args.threads} thread(s)), broker and this script "
          f"on CPU {client_cpu}; Python {sys.version.split()[0]}")
    bare, ingress, bodies = start_servers(children, workdir, server_cpu)
    smoke_post(ingress.url, *bodies[0])
    script = write_wrk_script(workdir, bodies)
    for target in (bare, ingress) if args.warmup > 0 else ():  # connections, caches, producer
        run_wrk(target.url, script, args, client_cpu, args.warmup, cpus)
    results: dict[str, list[WrkResult]] = {"bare": [], "ingress": []}
    failures = []
    for n in range(1, args.rounds + 1):
        for target in (bare, ingress):
            result, check = measure(target, script, args, client_cpu, cpus)
            print(_row(f"round {n} {target.name}", result, [server_cpu, client_cpu]), flush=True)
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
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the children
    children = Children()
    with tempfile.TemporaryDirectory(prefix="freshstream-bench-") as tmp:
        try:
            return benchmark(args, Path(tmp), children)
        except KeyboardInterrupt:
            print("\nbench: interrupted; stopping everything", file=sys.stderr)
            return 130
        except RuntimeError as exc:
            print(f"bench/ingress.py: error: {exc}", file=sys.stderr)
            return 1
        finally:
            children.stop_all()


if __name__ == "__main__":
    sys.exit(main())
