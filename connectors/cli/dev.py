"""`freshstream dev`: everything on one machine, with a demo integration ready to post to.

It is what a developer leaves running, so it supervises: every port is checked before
anything starts, the worker (a child process: Faust owns its own event loop) is restarted
when it dies, every child dies with `dev`, and the terminal shows only what a person acts
on (the banner, children starting and exiting, contacts) while logs go to the stack's
data dir. Each stack has its own data dir, so two of them on other ports run side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time
from pathlib import Path

import orjson

from connectors.cli import tail
from connectors.cli.arguments import port, positive
from connectors.cli.children import ChildProcess, Supervisor, child_environment, exit_text, last_error_line
from connectors.cli.logs import log_to_files
from connectors.cli.signals import until_signal_or
from connectors.freshchat.feed import publish_group_names
from connectors.ingress.service import IngressService
from connectors.integrations.records import load_cipher, new_ingress_key, new_integration
from connectors.integrations.registry import IntegrationStore, load_integrations
from connectors.kafka.broker import EmbeddedBroker, bind_refusal
from connectors.kafka.topics import wait_for_broker
from connectors.service import Service
from connectors.simulation.poster import post_scenario
from connectors.simulation.scenario import GROUPS, compare_contacts, scenario_ending_now
from streams.errors import ChildError, SimulationError, UsageError
from streams.settings import Settings, data_dir_error

__all__ = ["add_parser", "run_dev", "DEMO", "demo_curl", "ChildProcess", "child_environment",
           "check_ports", "stack_settings"]


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
    dev = sub.add_parser("dev", help="embedded broker + worker + ingress in one terminal (Ctrl-C stops all)",
                         description="Everything on one machine. The worker is restarted when it exits; "
                                     "logs go to the stack's data dir (FRESHSTREAM_DATA_DIR, else "
                                     ".freshstream/dev-<ingress port>/).")
    dev.add_argument("--port", type=port, help="ingress port (default FRESHSTREAM_INGRESS_PORT, 8080)")
    dev.add_argument("--broker-port", type=port, help="embedded broker port (default FRESHSTREAM_BROKER_PORT, 9092)")
    dev.add_argument("--worker-port", type=port,
                     help="port of the worker's /metrics page (default FRESHSTREAM_WORKER_WEB_PORT, 6066)")
    dev.add_argument("--simulate", type=positive(int), nargs="?", const=200, metavar="CHATS",
                     help="also post simulated Freshchat traffic ending now (default 200 chats), print the "
                          "contacts and how many of those expected arrived")


async def run_dev(args, settings: Settings) -> int:
    """Check ports, start broker (when embedded), worker and ingress, then watch them until Ctrl-C."""
    flags = {"ingress_port": args.port, "broker_port": args.broker_port, "worker_web_port": args.worker_port}
    settings = stack_settings(settings.replace(**{k: v for k, v in flags.items() if v is not None}))
    check_ports(settings)
    restore_logging = log_to_files(Path(settings.data_dir))
    started, watched = [], []
    try:
        if settings.embedded:
            broker = EmbeddedBroker(settings)
            await broker.start()
            started.append(broker)
            _say(f"broker started (pid {broker.process.pid}, {settings.bootstrap}, log {broker.log_path})")
            watched.append(asyncio.ensure_future(_watch_broker(broker)))
        else:
            await wait_for_broker(settings, timeout=min(10, settings.broker_wait_seconds))  # before a worker is started against nothing
        log = Path(settings.data_dir) / "worker.log"
        worker = Supervisor("worker", ChildProcess(settings, ["worker"], log), _say)
        await worker.start()
        started.append(worker)
        watched.append(worker.task)
        ingress = IngressService(settings)
        await ingress.start()
        started.append(ingress)
        key = await _demo_key(settings)
        await _until_known(ingress, key)
        print(_banner(settings, ingress.url, key), file=sys.stderr, flush=True)
        if args.simulate:
            started.append(await _start_simulation(settings, ingress.url, key, args.simulate))
        await until_signal_or(_first_failure(watched))
        _say("stopping: ingress, worker, broker")  # the worker's clean stop takes seconds; say it is under way
    finally:
        for task in watched:
            task.cancel()
        for service in reversed(started):
            await service.stop()
        restore_logging()
    _say("freshstream dev stopped")
    return 0


def stack_settings(settings: Settings) -> Settings:
    """Settings of this dev stack: its own data dir, unless FRESHSTREAM_DATA_DIR chose one.

    Two stacks in one data dir would share Faust's state and the mirrored integrations. The
    secret key stays the default data dir's, so integrations added from another terminal
    (which uses that dir) can be decrypted by this stack's worker.
    """
    if Path(settings.data_dir) != Settings.data_dir:
        return settings
    if not settings.secret_key:
        load_cipher(settings)  # makes the key once, as every other verb would
        try:
            secret = (Path(settings.data_dir) / "secret.key").read_text().strip()
        except OSError as exc:
            raise data_dir_error(Path(settings.data_dir) / "secret.key", exc) from None
        settings = settings.replace(secret_key=secret)
    stack = settings.replace(data_dir=Path(settings.data_dir) / f"dev-{settings.ingress_port}")
    _adopt_integrations(Path(settings.data_dir), Path(stack.data_dir))
    return stack


def _adopt_integrations(shared: Path, stack: Path) -> None:
    """A stack's first start takes the integrations a `dev` saved before stacks had their own
    dir, so a developer's integrations and keys do not vanish with the upgrade."""
    old, new = shared / "integrations.jsonl", stack / "integrations.jsonl"
    if new.exists() or not old.exists():
        return
    try:
        stack.mkdir(parents=True, exist_ok=True)
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(old.read_bytes())
    except FileExistsError:
        pass
    except OSError as exc:
        raise data_dir_error(new, exc) from None


def check_ports(settings: Settings) -> None:
    """Every port the stack will listen on, checked before anything starts, so a taken one
    is one line naming its flag instead of a half-started stack failing later."""
    wanted = [("--port", settings.ingress_host, settings.ingress_port),
              ("--worker-port", settings.worker_web_host, settings.worker_web_port)]
    if settings.embedded:
        wanted.insert(1, ("--broker-port", "127.0.0.1", settings.broker_port))
    seen: dict[int, str] = {}
    for flag, host, number in wanted:
        if number in seen:
            raise UsageError(f"port {number} is given to both {seen[number]} and {flag}; "
                             f"pick another with {flag}")
        seen[number] = flag
        reason = bind_refusal(host, number)
        if reason is not None:
            raise UsageError(f"port {number} is taken on {host} ({reason}); pick another with {flag}")


def _say(text: str) -> None:
    """A state change for the person at the terminal: one line, with the time it happened."""
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


async def _first_failure(tasks: list[asyncio.Future]) -> int:
    """Returns only by raising: the first watched child that gives up ends `dev` with its line."""
    if not tasks:
        await asyncio.Event().wait()
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        task.result()
    raise ChildError("a watched process ended without a word")  # watchers loop until they raise


async def _watch_broker(broker: EmbeddedBroker) -> None:
    """The embedded broker is memory-only: restarting it would silently lose every topic, so its
    exit ends `dev` with its reason rather than a restart."""
    while broker.process.poll() is None:
        await asyncio.sleep(0.2)
    error = last_error_line(broker.log_path) or "no error in its log"
    raise ChildError(f"the embedded broker (pid {broker.process.pid}) exited with "
                     f"{exit_text(broker.process.returncode)}: {error}; its topics went with it, so start "
                     f"freshstream dev again (log: {broker.log_path})")


class _Simulation(Service):
    """Simulated traffic posted to the demo integration, its contacts printed as they come and
    checked against the simulator's own expectation."""

    def __init__(self, settings: Settings, url: str, key: str, chats: int, settle_seconds: float = 60.0) -> None:
        super().__init__()
        self.settings, self.url, self.key, self.chats = settings, url, key, chats
        self.settle_seconds = settle_seconds  # after the last delivery, how long contacts may take
        self.stop_tail = asyncio.Event()
        self.received: list[dict] = []
        self.arrived = asyncio.Event()

    async def on_start(self) -> None:
        await publish_group_names(self.settings, DEMO, GROUPS)  # as the REST API would list them
        tail_args = argparse.Namespace(integration=DEMO, queue=None, from_beginning=True, max=None)
        self.add_future(tail.run(tail_args, self.settings, self._contact, self.stop_tail))
        self.add_future(self._post())

    def _contact(self, line: str) -> None:
        contact = orjson.loads(line)
        self.received.append(contact)
        self.arrived.set()
        _print_contact(contact)

    async def _post(self) -> None:
        scenario = scenario_ending_now(DEMO, self.chats)
        try:
            summary = await post_scenario(self.url, DEMO, self.key, scenario, rate=200)
        except SimulationError as exc:
            _say(f"simulation stopped: {exc}")
            return
        expected = scenario.expected
        _say(f"simulation posted {summary['deliveries']} deliveries; {len(expected)} contacts expected")
        deadline = time.monotonic() + self.settle_seconds
        while (got := compare_contacts(expected, self.received)) != (len(expected), 0):
            if time.monotonic() > deadline:
                break
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                pass
        late = "" if got[0] == len(expected) else f" (after waiting {self.settle_seconds:.0f} s; see worker.log)"
        print(f"{got[0]} of {len(expected)} contacts received, {got[1]} differing{late}", flush=True)

    async def on_stop(self) -> None:
        self.stop_tail.set()


async def _start_simulation(settings: Settings, url: str, key: str, chats: int) -> _Simulation:
    simulation = _Simulation(settings, url, key, chats)
    await simulation.start()
    return simulation


def _print_contact(contact: dict) -> None:
    if contact.get("retracted"):
        print(f"contact {contact['contact_id']}  retracted", flush=True)
        return
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
        f"  worker:   metrics http://{settings.worker_web_host}:{settings.worker_web_port}/metrics",
        f"  logs:     {settings.data_dir}/ (worker.log, broker.log, dev.log, access.log)",
        f"  contacts: {_other_terminal(settings)}freshstream tail   (in another terminal)",
        f"  demo integration {DEMO!r}, ingress key for this run: {key}",
        "  post a sample event:",
        "  " + demo_curl(url, key),
        "Ctrl-C stops everything.",
        "",
    ])


def _other_terminal(settings: Settings) -> str:
    """What another terminal must set for its verbs to reach this stack's broker."""
    if settings.embedded and settings.broker_port != Settings.broker_port:
        return f"FRESHSTREAM_BROKER_PORT={settings.broker_port} "
    return ""
