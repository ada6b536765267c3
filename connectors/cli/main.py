"""The `freshstream` command line: one verb per process kind, errors as one line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from importlib import metadata

from connectors.cli import broker, deliver, dev, ingress, integrations, intervals, lag, replay, simulate, tail, worker
from connectors.cli.logs import add_options, configure_logging
from connectors.cli.signals import until_signal_or
from connectors.kafka.clients import broker_errors
from streams.errors import FreshstreamError
from streams.settings import ENV_PREFIX, Settings

__all__ = ["main", "build_parser"]

logger = logging.getLogger(__name__)

VERBS = (dev, broker, ingress, worker, tail, intervals, deliver, simulate, lag, replay, integrations)  # in `--help` order


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one error line and exit 1, as every other error is."""

    def error(self, message: str):
        self.exit(1, f"freshstream: error: {message}; see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    """Every verb and its options; `--help` on any of them documents it."""
    parser = _Parser(
        prog="freshstream", description="Freshchat webhooks to Kafka, and contacts for workforce management.")
    parser.add_argument("--version", action="version", version=f"freshstream {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for verb in VERBS:
        verb.add_parser(sub)
    for verb_parser in sub.choices.values():
        add_options(verb_parser)
    return parser


def _version() -> str:
    try:
        return metadata.version("freshstream")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


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
        configure_logging(settings, args.command, args.verbose, args.log_level)
        if args.command == "worker":
            return worker.run_worker(settings, args.web_port)
        if args.command == "ingress":  # an HTTP server: on uvloop's event loop where it is installed
            with asyncio.Runner(loop_factory=fast_loop_factory()) as runner:
                return runner.run(_dispatch(args, settings))
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


def fast_loop_factory():
    """uvloop's event loop where it is installed (CPython on Linux and macOS), else asyncio's.

    The ingress spends most of its time in the event loop and socket calls; uvloop does those
    in C (bench/ingress.py, docs/testing.md). The worker runs Faust's loop and keeps it.
    """
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _fail(message: str) -> int:
    print(f"freshstream: error: {' '.join(message.split())}", file=sys.stderr)  # one line, whatever it quotes
    return 1


async def _dispatch(args, settings: Settings) -> int:
    if args.command == "simulate":  # HTTP only: a Kafka error cannot arise, a timeout is not the broker's
        return await simulate.run(args, settings, print)
    with broker_errors(settings):
        return await _dispatch_kafka(args, settings)


async def _dispatch_kafka(args, settings: Settings) -> int:
    if args.command == "replay":
        return await replay.run(args, settings, print)
    if args.command == "lag":
        return await until_signal_or(lag.run(args, settings, print))
    if args.command == "tail":
        return await until_signal_or(tail.run(args, settings))
    if args.command == "intervals":  # an export: Ctrl-C leaves it unfinished, exit 130, not 0
        return await intervals.run(args, settings, print)
    if args.command == "deliver":
        return await deliver.run(args, settings)
    if args.command == "integrations":
        return await integrations.run(args, settings, print)
    if args.command == "broker":
        return await broker.run(args, settings)
    if args.command == "ingress":
        return await ingress.run(args, settings)
    return await dev.run_dev(args, settings)
