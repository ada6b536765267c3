"""`freshstream deliver injixo|csv`: the sinks that carry contacts the last mile into a WFM (docs/delivery.md)."""

from __future__ import annotations

from connectors.cli.arguments import port
from connectors.cli.signals import serve
from connectors.kafka.topics import ensure_topics, partition_count, wait_for_broker
from streams.errors import SettingsError
from streams.settings import Settings

__all__ = ["add_parser", "run", "ROTATIONS"]

ROTATIONS = {"15m": 15, "30m": 30, "60m": 60, "1h": 60}  # --rotate: one file per interval of this length


def _seconds(text: str) -> float:
    import argparse
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, not {text}")
    return value


def add_parser(sub) -> None:
    """Register the `deliver` verb and its two sinks."""
    parser = sub.add_parser("deliver", help="deliver contacts into a WFM: injixo's API or CSV files",
                            description="Long-running sinks that read the contacts topic in their own consumer "
                                        "group and deliver each contact once it has settled.")
    sinks = parser.add_subparsers(dest="sink", required=True, metavar="SINK")
    injixo = sinks.add_parser(
        "injixo", help="post contact events to injixo for every integration with set-delivery",
        description="Posts each settled contact to injixo's POST /external-systems/contact-events; a revision "
                    "after delivery is posted as its difference. Offsets are committed only after injixo "
                    "answered 2xx. Configure an integration with 'freshstream integrations set-delivery'.")
    injixo.add_argument("--url", help="injixo's API base URL (default FRESHSTREAM_INJIXO_URL, "
                                      "https://api.injixo.com)")
    csv = sinks.add_parser(
        "csv", help="write contact and interval rows as CSV files for a WFM's file import",
        description="Writes one CSV file per interval and integration under --dir, atomically (write, then "
                    "rename); a file is written again, whole, when a late revision changes its interval.")
    csv.add_argument("--dir", required=True, metavar="DIR", help="directory the files are written to")
    csv.add_argument("--rotate", choices=sorted(ROTATIONS, key=ROTATIONS.get), default="15m",
                     help="length of the interval one file holds (default 15m)")
    for sink in (injixo, csv):
        sink.add_argument("--settle", type=_seconds, metavar="SECONDS",
                          help="deliver a contact once it went this long without a revision "
                               "(default FRESHSTREAM_DELIVERY_SETTLE_SECONDS, 60)")
        sink.add_argument("--web-port", type=port, help="port of /healthz, /readyz and /metrics on 127.0.0.1 "
                                                       "(default: any free port, logged at start)")


async def run(args, settings: Settings) -> int:
    """Run one sink until Ctrl-C."""
    if args.settle is not None:
        settings = settings.replace(delivery_settle_seconds=args.settle)
    if args.sink == "injixo":
        return await _run_injixo(settings.replace(injixo_url=args.url or settings.injixo_url), args.web_port)
    from connectors.delivery.csv_files import run_csv
    return await run_csv(args, settings, ROTATIONS[args.rotate])


async def _run_injixo(settings: Settings, web_port: int | None) -> int:
    """Wait for Kafka, check that the state topic is partitioned like the contacts, serve until Ctrl-C."""
    from connectors.delivery.injixo import InjixoSink  # httpx and the sink: only this verb needs them
    await wait_for_broker(settings, timeout=min(10, settings.broker_wait_seconds))
    await ensure_topics(settings)
    contacts = await partition_count(settings, settings.contacts_topic)
    state = await partition_count(settings, settings.delivery_state_topic)
    if contacts != state:
        raise SettingsError(f"{settings.contacts_topic} has {contacts} partitions but "
                            f"{settings.delivery_state_topic} has {state}: the sink keeps what it delivered in the "
                            "partition of the contacts it is about, so they must match; recreate "
                            "FRESHSTREAM_DELIVERY_STATE_TOPIC with as many partitions")
    return await serve([InjixoSink(settings, web_port)], "deliver injixo")
