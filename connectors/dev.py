"""`freshstream dev`: everything on one machine, with a demo integration ready to post to."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import orjson

from connectors.broker import EmbeddedBroker
from connectors.child import ChildProcess
from connectors.ingress_service import IngressService
from connectors.integrations import new_ingress_key, new_integration
from connectors.registry import IntegrationStore, load_integrations
from streams.settings import Settings

__all__ = ["run_dev", "DEMO", "demo_curl"]

DEMO = "demo"
SAMPLE_EVENT = {
    "event": "onMessageCreate", "timestamp": 1714986001,
    "data": {"actor": {"type": "user", "id": "u-1"},
             "message": {"id": "m-1", "conversation_id": "conv-0001", "actor_type": "user",
                         "message_type": "normal", "created_time": "2024-05-06T09:00:01.180Z",
                         "message_parts": [{"text": {"content": "Hello"}}]}},
}


async def run_dev(args, settings: Settings, until_signal) -> int:
    """Start broker (when embedded), worker and ingress, print how to post, wait for Ctrl-C."""
    if args.broker_port:
        settings = settings.replace(broker_port=args.broker_port)
    started = []
    try:
        if settings.embedded:
            broker = EmbeddedBroker(settings)
            await broker.start()
            started.append(broker)
        worker = ChildProcess(settings, ["worker"], Path(settings.data_dir) / "worker.log")
        await worker.start()
        started.append(worker)
        ingress = IngressService(settings, port=args.port)
        await ingress.start()
        started.append(ingress)
        key = await _demo_key(settings)
        print(_banner(settings, ingress.url, key), file=sys.stderr, flush=True)
        await until_signal()
    finally:
        for service in reversed(started):
            await service.stop()
    print("freshstream dev stopped", file=sys.stderr)
    return 0


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
