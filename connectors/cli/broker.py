"""`freshstream broker`: the embedded Kafka-compatible broker (Tansu) on 127.0.0.1, until Ctrl-C."""

from __future__ import annotations

from connectors.cli.arguments import port
from connectors.cli.signals import serve
from connectors.kafka.broker import EmbeddedBroker
from streams.settings import Settings

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    """Register the `broker` verb."""
    broker = sub.add_parser("broker", help="run the embedded Kafka-compatible broker (Tansu)")
    broker.add_argument("--port", type=port, help="port on 127.0.0.1 (default FRESHSTREAM_BROKER_PORT, 9092)")


async def run(args, settings: Settings) -> int:
    return await serve([EmbeddedBroker(settings, args.port)], "broker")
