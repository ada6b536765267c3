"""Argument types every verb shares, so a bad number is refused the same way everywhere.

argparse calls these with the text given; an ArgumentTypeError becomes the one-line usage
error (`freshstream: error: argument --port: …`), never a traceback from deeper down (an
OverflowError from the socket layer for `--port 99999`).
"""

from __future__ import annotations

import argparse

from streams.domain.times import ms_to_short_time, parse_operator_time
from streams.errors import UsageError

__all__ = ["positive", "port", "time_window"]


def positive(kind):
    """An argparse type accepting only numbers above zero, with a clear message otherwise."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value != value or value in (float("inf"), float("-inf")):  # NaN is the one value unequal to itself
            raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above zero, not {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


def port(text: str) -> int:
    """A TCP port, 1-65535 (0 would ask the system for any free one, which a verb cannot announce)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port: use 1-65535")
    return value


def time_window(since: str, until: str | None, now_ms: int) -> tuple[int, int]:
    """[--since, --until) as epoch ms, both read against one `now` (--until defaults to it); a bad
    time or an empty window is the one-line usage error naming the flag."""
    start = _operator_time(since, "--since", now_ms)
    end = _operator_time(until, "--until", now_ms) if until else now_ms
    if end <= start:
        raise UsageError(f"--until {ms_to_short_time(end)} is not after --since {ms_to_short_time(start)}; "
                         "give a later --until or an earlier --since")
    return start, end


def _operator_time(text: str, option: str, now_ms: int) -> int:
    try:
        return parse_operator_time(text, now_ms)
    except ValueError as exc:
        raise UsageError(f"{option} {text!r} {exc}") from None
