"""`freshstream ingress`: the webhook ingress, once a broker answers, until Ctrl-C."""

from __future__ import annotations

from connectors.cli.arguments import port
from connectors.cli.signals import serve
from connectors.kafka.topics import wait_for_broker
from streams.settings import Settings

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    """Register the `ingress` verb."""
    ingress = sub.add_parser("ingress", help="run the webhook ingress")
    ingress.add_argument("--host", help="address to listen on (default FRESHSTREAM_INGRESS_HOST)")
    ingress.add_argument("--port", type=port, help="port to listen on (default FRESHSTREAM_INGRESS_PORT)")


async def run(args, settings: Settings) -> int:
    from connectors.ingress.service import IngressService  # aiohttp's server: only this verb needs it
    await wait_for_broker(settings, timeout=min(10, settings.broker_wait_seconds))
    return await serve([IngressService(settings, args.host, args.port)], "ingress")
