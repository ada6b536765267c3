"""The `freshstream` command line: one verb per process kind, errors as one line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from connectors.cli import integrations, lag, replay, simulate, tail, worker
from connectors.kafka.broker import EmbeddedBroker
from connectors.kafka.clients import broker_errors
from connectors.kafka.topics import wait_for_broker
from streams.errors import FreshstreamError, SettingsError
from streams.settings import ENV_PREFIX, Settings

__all__ = ["main", "build_parser"]

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """Every verb and its options; `--help` on any of them documents it."""
    parser = argparse.ArgumentParser(
        prog="freshstream", description="Freshchat webhooks to Kafka, and contacts for workforce management.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    dev = sub.add_parser("dev", help="embedded broker + ingress in one terminal (Ctrl-C stops all)")
    dev.add_argument("--port", type=int, help="ingress port (default FRESHSTREAM_INGRESS_PORT, 8080)")
    dev.add_argument("--broker-port", type=int, help="embedded broker port (default 9092)")
    dev.add_argument("--simulate", type=int, nargs="?", const=200, metavar="CHATS",
                     help="also post simulated Freshchat traffic (default 200 chats) and print the contacts")
    broker = sub.add_parser("broker", help="run the embedded Kafka-compatible broker (Tansu)")
    broker.add_argument("--port", type=int, help="port on 127.0.0.1 (default FRESHSTREAM_BROKER_PORT, 9092)")
    ingress = sub.add_parser("ingress", help="run the webhook ingress")
    ingress.add_argument("--host", help="address to listen on (default FRESHSTREAM_INGRESS_HOST)")
    ingress.add_argument("--port", type=int, help="port to listen on (default FRESHSTREAM_INGRESS_PORT)")
    worker.add_parser(sub)
    tail.add_parser(sub)
    simulate.add_parser(sub)
    lag.add_parser(sub)
    replay.add_parser(sub)
    integrations.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script: the one place an error becomes what the user reads.

    Below here errors are raised, never printed, so every failure of every verb ends the
    same way: one `freshstream: error: …` line and exit 1. A FreshstreamError's message is
    complete; anything else is a bug or a failure nobody translated yet, shown in one line
    too, with its traceback kept for FRESHSTREAM_LOG_LEVEL=debug.
    """
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        _configure_logging(settings)
        if args.command == "worker":
            return worker.run_worker(settings, args.web_port)
        return asyncio.run(_dispatch(args, settings))
    except KeyboardInterrupt:
        return 130
    except FreshstreamError as exc:
        logger.debug("the traceback of the error below", exc_info=exc)
        return _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - the last resort: no traceback on a terminal
        logger.debug("the traceback of the error below", exc_info=exc)
        detail = f": {exc}" if str(exc) else ""
        return _fail(f"unexpected {type(exc).__name__}{detail} (run with {ENV_PREFIX}LOG_LEVEL=debug "
                     "for the traceback)")


def _fail(message: str) -> int:
    print(f"freshstream: error: {' '.join(message.split())}", file=sys.stderr)  # one line, whatever it quotes
    return 1


def _configure_logging(settings: Settings) -> None:
    own = _level(settings.log_level, "LOG_LEVEL")
    logging.basicConfig(level=own, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    level = max(own, _level(settings.library_log_level, "LIBRARY_LOG_LEVEL"))
    for library in ("aiokafka", "faust", "mode", "httpx", "httpcore"):
        logging.getLogger(library).setLevel(level)
    logging.getLogger("aiohttp.server").addFilter(_malformed_request_filter)


def _malformed_request_filter(record: logging.LogRecord) -> bool:
    """Drop aiohttp's ERROR-with-traceback for malformed HTTP: it is the client's fault, the
    client already got a 400 naming it, and the traceback quotes the offending header line,
    which may be an Authorization header. Errors in our own handlers are still logged."""
    from aiohttp.http_exceptions import HttpProcessingError

    exc = record.exc_info[1] if record.exc_info else None
    return not isinstance(exc, HttpProcessingError)


def _level(name: str, variable: str) -> int:
    """logging would reject an unknown name with a bare ValueError, or a number with a TypeError."""
    level = logging.getLevelNamesMapping().get(name.upper())
    if level is None:
        raise SettingsError(f"{ENV_PREFIX}{variable}={name!r}: use one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    return level


async def _dispatch(args, settings: Settings) -> int:
    if args.command == "simulate":  # HTTP only: a Kafka error cannot arise, a timeout is not the broker's
        return await simulate.run(args, settings, print)
    with broker_errors(settings):
        return await _dispatch_kafka(args, settings)


async def _dispatch_kafka(args, settings: Settings) -> int:
    if args.command == "replay":
        return await replay.run(args, settings, print)
    if args.command == "lag":
        return await _until_signal_or(lag.run(args, settings, print))
    if args.command == "tail":
        return await _until_signal_or(tail.run(args, settings))
    if args.command == "integrations":
        return await integrations.run(args, settings, print)
    if args.command == "broker":
        return await _serve([EmbeddedBroker(settings, args.port)], "broker")
    if args.command == "ingress":
        from connectors.ingress.service import IngressService
        await wait_for_broker(settings, timeout=10)
        return await _serve([IngressService(settings, args.host, args.port)], "ingress")
    from connectors.cli.dev import run_dev
    return await run_dev(args, settings, _until_signal)


async def _serve(services: list, name: str) -> int:
    started = []
    try:
        for service in services:
            await service.start()
            started.append(service)
        print(f"freshstream {name} running; Ctrl-C stops it", file=sys.stderr)
        await _until_signal()
    finally:
        for service in reversed(started):
            await service.stop()
    return 0


async def _until_signal_or(work) -> int:
    """Run work until it ends or SIGINT/SIGTERM arrives (then exit 0, as `tail -f` users expect)."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(_until_signal())
    done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, waiter):
        pending.cancel()
    await asyncio.gather(task, waiter, return_exceptions=True)
    return task.result() if task in done and not task.cancelled() else 0


async def _until_signal() -> None:
    """Wait for SIGINT or SIGTERM, so both stop the process cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)

