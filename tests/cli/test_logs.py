"""Quiet by default, more on request, never a flood: connectors/cli/logs.py."""

from __future__ import annotations

import logging

from connectors.cli.logs import RepeatLimiter, configure_logging
from connectors.cli.main import build_parser


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(template: str, *args, name: str = "aiokafka.conn") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, template, args, None)


def test_a_repeated_message_is_written_once_per_window_with_the_count_held_back():
    clock = Clock()
    limiter = RepeatLimiter(window=30, clock=clock)
    passed = [limiter.filter(record("Unable connect to node with id %s", n)) for n in range(170)]
    assert passed == [True] + [False] * 169
    clock.now = 31
    again = record("Unable connect to node with id %s", 7)
    assert limiter.filter(again)
    assert again.getMessage() == "Unable connect to node with id 7 (and 169 more like it in the last 30 s)"
    assert limiter.filter(record("another message")), "other messages are not held back"
    assert limiter.filter(record("Unable connect to node with id %s", 1, name="faust")), "nor other loggers"


def levels(verb: str, *flags: str, env_level: str = "") -> tuple[int, int]:
    """(root, aiokafka) levels after configuring logging for `freshstream <verb> <flags>`."""
    from streams.settings import Settings

    args = build_parser().parse_args([verb, *flags])
    root, library = logging.getLogger(), logging.getLogger("aiokafka")
    handlers, root_level, library_level = root.handlers[:], root.level, library.level
    root.handlers[:] = []  # as in a fresh process: the suite's capture handler is put back below
    try:
        configure_logging(Settings(log_level=env_level), verb, args.verbose, args.log_level)
        return root.level, library.level
    finally:
        root.handlers[:] = handlers
        root.setLevel(root_level)
        library.setLevel(library_level)


def test_operator_commands_are_quiet_and_services_log_at_info():
    assert levels("tail") == (logging.WARNING, logging.CRITICAL)
    assert levels("worker") == (logging.INFO, logging.INFO)
    assert levels("tail", "-v") == (logging.INFO, logging.CRITICAL)
    assert levels("tail", "-vv") == (logging.DEBUG, logging.INFO)
    assert levels("lag", "--log-level", "error") == (logging.ERROR, logging.CRITICAL)
    assert levels("ingress", env_level="WARNING") == (logging.WARNING, logging.WARNING)
