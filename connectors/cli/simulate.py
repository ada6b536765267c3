"""`freshstream simulate`: post generated Freshchat traffic whose contacts are known in advance."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from connectors.cli.arguments import positive
from connectors.simulation.poster import post_scenario
from connectors.simulation.scenario import build_scenario
from streams.errors import UsageError
from streams.settings import Settings

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    """Register the `simulate` verb."""
    parser = sub.add_parser(
        "simulate", help="post Freshchat-shaped traffic with a known ground truth",
        description="Generate chats (both Freshchat formats, retries, out-of-order events), post them "
                    "to an ingress, and optionally write the contacts they must yield.")
    add = parser.add_argument
    add("--url", help="ingress base URL (default http://FRESHSTREAM_INGRESS_HOST:FRESHSTREAM_INGRESS_PORT)")
    add("--integration", required=True, metavar="ID", help="integration id: posts go to /webhooks/freshchat/ID")
    key = parser.add_mutually_exclusive_group(required=True)
    key.add_argument("--key-env", metavar="VAR", help="read the integration's ingress key from this variable")
    key.add_argument("--key-file", metavar="PATH", help="read the integration's ingress key from this file")
    key.add_argument("--key", help="the ingress key itself: deprecated, since ps and shell history show it")
    add("--chats", required=True, type=positive(int), metavar="N", help="number of chats to simulate")
    add("--rate", type=positive(float), metavar="R", help="deliveries per second (default: as fast as possible)")
    add("--seed", type=int, default=1, metavar="S", help="random seed: the same seed, the same traffic (default 1)")
    add("--expect", metavar="FILE", help="write the expected contacts here as JSON lines, sorted by contact_id")
    add("--concurrency", type=positive(int), default=8, metavar="C",
        help="requests in flight at most (default 8); one chat never has two")
    add("--disorder", action="store_true",
        help="deliver each chat's events adversarially: across closes, after their own close, closes re-posted "
             "while a later cycle is open; same chats and expected contacts as without it")


async def run(args, settings: Settings, out) -> int:
    """Build the scenario, write its expectation, post it, and report one summary line."""
    url = _ingress_url(args.url or f"http://{settings.ingress_host}:{settings.ingress_port}")
    key = ingress_key(args)
    # getattr: callers that build the namespace themselves may leave the newer flag out
    scenario = build_scenario(args.integration, args.chats, args.seed, disorder=getattr(args, "disorder", False))
    if args.expect:
        _write_expected(Path(args.expect), scenario.expected)
    summary = await post_scenario(url, args.integration, key, scenario,
                                  rate=args.rate, concurrency=args.concurrency)
    out(f"simulate: posted {summary['deliveries']} deliveries of {args.chats} chats to {summary['url']}: "
        f"{summary['accepted']} events accepted, {summary['retries']} retries, "
        f"{summary['elapsed_seconds']:.1f} s, {summary['rate']:.0f} deliveries/s; "
        f"{len(scenario.expected)} contacts expected")
    return 0


def ingress_key(args) -> str:
    """The key from a variable or a file, so that it stays out of `ps` and shell history;
    `--key` still works for scripts written before, with one warning line on stderr."""
    # getattr: callers that build the namespace themselves may leave the newer flags out
    variable, path = getattr(args, "key_env", None), getattr(args, "key_file", None)
    if variable:
        value = os.environ.get(variable, "").strip()
        if not value:
            raise UsageError(f"--key-env {variable}: that variable is unset or empty; "
                             "export the integration's ingress key in it")
        return value
    if path:
        try:
            value = Path(path).read_text().strip()
        except OSError as exc:
            raise UsageError(f"--key-file {path}: cannot read it ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise UsageError(f"--key-file {path}: not a text file") from None
        if not value:
            raise UsageError(f"--key-file {path}: the file is empty; write the integration's ingress key in it")
        return value
    print("freshstream: warning: --key shows the ingress key to anyone who can run ps, and keeps it in "
          "shell history; use --key-env VAR or --key-file PATH", file=sys.stderr)
    return args.key


def _ingress_url(url: str) -> str:
    """Checked up front: a malformed URL would otherwise fail every post, six times each, as unreachable."""
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # the port is not a number, or above 65535
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise UsageError(f"--url {url!r} is not an ingress URL such as http://127.0.0.1:8080")
    return url


def _write_expected(path: Path, contacts: list[dict]) -> None:
    lines = sorted(contacts, key=lambda c: c["contact_id"])
    try:
        path.write_bytes(b"".join(orjson.dumps(c) + b"\n" for c in lines))
    except OSError as exc:
        raise UsageError(f"--expect {path}: cannot write it ({exc.strerror})") from None
