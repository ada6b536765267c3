"""`freshstream dev`: everything on one machine, with a demo integration ready to post to.

The worker runs as a child process (ChildProcess): Faust owns its own event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import orjson

from connectors.cli.arguments import port, positive
from connectors.cli import tail
from connectors.cli.signals import until_signal
from connectors.freshchat.feed import publish_group_names
from connectors.ingress.service import IngressService
from connectors.integrations.records import new_ingress_key, new_integration
from connectors.integrations.registry import IntegrationStore, load_integrations
from connectors.kafka.broker import EmbeddedBroker
from connectors.kafka.topics import wait_for_broker
from connectors.service import Service
from connectors.simulation.poster import post_scenario
from connectors.simulation.scenario import GROUPS, build_scenario
from streams.errors import SimulationError
from streams.settings import ENV_PREFIX, Settings, open_log

__all__ = ["add_parser", "run_dev", "DEMO", "demo_curl", "ChildProcess", "child_environment"]


DEMO = "demo"
SAMPLE_EVENT = {
    "event": "onMessageCreate", "timestamp": 1714986001,
    "data": {"actor": {"type": "user", "id": "u-1"},
             "message": {"id": "m-1", "conversation_id": "conv-0001", "actor_type": "user",
                         "message_type": "normal", "created_time": "2024-05-06T09:00:01.180Z",
                         "message_parts": [{"text": {"content": "Hello"}}]}},
}


def add_parser(sub) -> None:
    """Register the `dev` verb."""
    dev = sub.add_parser("dev", help="embedded broker + ingress in one terminal (Ctrl-C stops all)")
    dev.add_argument("--port", type=port, help="ingress port (default FRESHSTREAM_INGRESS_PORT, 8080)")
    dev.add_argument("--broker-port", type=port, help="embedded broker port (default 9092)")
    dev.add_argument("--simulate", type=positive(int), nargs="?", const=200, metavar="CHATS",
                     help="also post simulated Freshchat traffic (default 200 chats) and print the contacts")


async def run_dev(args, settings: Settings) -> int:
    """Start broker (when embedded), worker and ingress, print how to post, wait for Ctrl-C."""
    if args.broker_port:
        settings = settings.replace(broker_port=args.broker_port)
    started = []
    try:
        if settings.embedded:
            broker = EmbeddedBroker(settings)
            await broker.start()
            started.append(broker)
        else:
            await wait_for_broker(settings, timeout=10)  # before a worker is started against nothing
        worker = ChildProcess(settings, ["worker"], Path(settings.data_dir) / "worker.log")
        await worker.start()
        started.append(worker)
        ingress = IngressService(settings, port=args.port)
        await ingress.start()
        started.append(ingress)
        key = await _demo_key(settings)
        await _until_known(ingress, key)
        print(_banner(settings, ingress.url, key), file=sys.stderr, flush=True)
        if args.simulate:
            started.append(await _start_simulation(settings, ingress.url, key, args.simulate))
        await until_signal()
    finally:
        for service in reversed(started):
            await service.stop()
    print("freshstream dev stopped", file=sys.stderr)
    return 0


class _Simulation(Service):
    """Simulated traffic posted to the demo integration, and its contacts printed as they come."""

    def __init__(self, settings: Settings, url: str, key: str, chats: int) -> None:
        super().__init__()
        self.settings, self.url, self.key, self.chats = settings, url, key, chats
        self.stop_tail = asyncio.Event()

    async def on_start(self) -> None:
        await publish_group_names(self.settings, DEMO, GROUPS)  # as the REST API would list them
        tail_args = argparse.Namespace(integration=DEMO, queue=None, from_beginning=True, max=None)
        self.add_future(tail.run(tail_args, self.settings, _print_contact, self.stop_tail))
        self.add_future(self._post())

    async def _post(self) -> None:
        scenario = build_scenario(DEMO, self.chats, seed=1)
        try:
            summary = await post_scenario(self.url, DEMO, self.key, scenario, rate=200)
        except SimulationError as exc:
            print(f"simulation stopped: {exc}", file=sys.stderr, flush=True)
            return
        print(f"simulation posted {summary['deliveries']} deliveries; "
              f"{len(scenario.expected)} contacts expected", file=sys.stderr, flush=True)

    async def on_stop(self) -> None:
        self.stop_tail.set()


async def _start_simulation(settings: Settings, url: str, key: str, chats: int) -> _Simulation:
    simulation = _Simulation(settings, url, key, chats)
    await simulation.start()
    return simulation


def _print_contact(line: str) -> None:
    contact = orjson.loads(line)
    wait = "-" if contact["wait_seconds"] is None else f"{contact['wait_seconds']:.0f}s"
    print(f"contact {contact['contact_id']}  queue={contact['queue']}  outcome={contact['outcome']}  "
          f"wait={wait}  duration={contact['duration_seconds']:.0f}s", flush=True)


async def _until_known(ingress: IngressService, key: str, timeout: float = 10.0) -> None:
    """Wait until the ingress has followed the demo's new key, so the banner's curl works at once."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        demo = ingress.registry.get(DEMO)
        if demo is not None and demo.key_matches(key):
            return
        await asyncio.sleep(0.05)


async def _demo_key(settings: Settings) -> str:
    """A fresh key for the demo integration, created on first run and re-keyed on each start.

    Keys are stored only as hashes, so the demo's key cannot be shown again; a
    new one each run keeps the printed curl line working without a plaintext copy.
    """
    registry = await load_integrations(settings)
    key = new_ingress_key()
    current = registry.get(DEMO)
    record = current.with_key(key) if current else new_integration(DEMO, "demo.freshchat.com", key)
    async with IntegrationStore(settings) as store:
        await store.put(record)
    return key


def demo_curl(url: str, key: str) -> str:
    """A ready-to-paste curl line posting one app event to the demo integration."""
    return " ".join([
        "curl -sS -X POST", shlex.quote(f"{url}/webhooks/freshchat/{DEMO}"),
        "-H", shlex.quote(f"Authorization: Bearer {key}"),
        "-H", shlex.quote("Content-Type: application/json"),
        "-d", shlex.quote(orjson.dumps(SAMPLE_EVENT).decode()),
    ])


def _banner(settings: Settings, url: str, key: str) -> str:
    return "\n".join([
        "",
        f"freshstream dev is running. Kafka: {settings.bootstrap}"
        + (" (embedded, in memory)" if settings.embedded else ""),
        f"  ingress:  {url}   (health {url}/healthz, metrics {url}/metrics)",
        f"  worker:   metrics http://127.0.0.1:{settings.worker_web_port}/metrics, log {settings.data_dir}/worker.log",
        "  contacts: freshstream tail   (in another terminal)",
        f"  demo integration {DEMO!r}, ingress key for this run: {key}",
        "  post a sample event:",
        "  " + demo_curl(url, key),
        "Ctrl-C stops everything.",
        "",
    ])


class ChildProcess:
    """`python -m connectors.cli <verb>` with the parent's settings, logging to a file."""

    def __init__(self, settings: Settings, args: list[str], log_path: Path) -> None:
        self.settings, self.args, self.log_path = settings, args, log_path
        self.process: subprocess.Popen | None = None

    async def start(self) -> None:
        with open_log(self.log_path) as log:
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
