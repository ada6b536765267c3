"""What a person at a terminal sees of the logs: little by default, more on request, never a flood.

- Operator commands (tail, lag, replay, integrations, simulate, dev) log at WARNING: their
  answer is what they print. The long-running services (worker, ingress, broker) log at
  INFO, which is what their log files are for. FRESHSTREAM_LOG_LEVEL, then `--log-level` or
  `-v` (INFO) / `-vv` (DEBUG) on any verb, override that.
- Kafka's and Faust's libraries log at FRESHSTREAM_LIBRARY_LOG_LEVEL but never below our
  own level. Under an operator command they are silent unless `-vv` asks for DEBUG: a
  broker that cannot be reached is said once, in our own words (BrokerError), not as
  aiokafka's ERROR line per connection attempt.
- The same message from one logger, repeated, is written once per REPEAT_SECONDS with a
  count of the ones held back: a worker whose broker went away logs "Unable connect to
  node" once in half a minute, not 170 times a second.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from streams.errors import SettingsError
from streams.settings import ENV_PREFIX, Settings, data_dir_error

__all__ = ["add_options", "configure_logging", "log_to_files", "RepeatLimiter", "SERVICES"]

SERVICES = ("worker", "ingress", "broker")  # processes whose log is a file someone reads later
LIBRARIES = ("aiokafka", "faust", "mode", "httpx", "httpcore")
REPEAT_SECONDS = 30.0


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def add_options(parser) -> None:
    """-v/-vv and --log-level, on every verb: `freshstream tail -v` is where a user types it."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="count", default=0,
                       help="log more: -v at INFO, -vv at DEBUG (libraries included)")
    group.add_argument("--log-level", type=str.upper, choices=LEVELS, metavar="LEVEL",
                       help="log at this level (DEBUG, INFO, WARNING, ERROR); overrides FRESHSTREAM_LOG_LEVEL")


def configure_logging(settings: Settings, verb: str, verbosity: int = 0, level: str | None = None) -> None:
    """Root handler on stderr at the level this verb, the settings and the flags give."""
    if level:
        own = logging.getLevelNamesMapping()[level]  # argparse has checked the name
    elif verbosity:
        own = logging.DEBUG if verbosity > 1 else logging.INFO
    elif settings.log_level:
        own = _level(settings.log_level, f"{ENV_PREFIX}LOG_LEVEL")
    else:
        own = logging.INFO if verb in SERVICES else logging.WARNING
    root = logging.getLogger()
    if not root.handlers:  # as logging.basicConfig: a host that set up logging (a test) keeps its own
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(RepeatLimiter())
        root.addHandler(handler)
        root.setLevel(own)
    library = max(own, _level(settings.library_log_level, f"{ENV_PREFIX}LIBRARY_LOG_LEVEL"))
    if verb not in SERVICES and own > logging.DEBUG:
        library = max(library, logging.CRITICAL)  # an operator command says what failed itself, once
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(library)
    logging.getLogger("aiohttp.server").addFilter(malformed_request_filter)


class RepeatLimiter(logging.Filter):
    """Let a repeated message through once per `window` seconds, noting how many were held back.

    A message is the logger's name with the unformatted template, so "Unable connect to node
    with id 1" and "… id 2" count as one. Tracebacks of repeats are dropped with them.
    """

    def __init__(self, window: float = REPEAT_SECONDS, clock=time.monotonic) -> None:
        super().__init__()
        self.window, self.clock = window, clock
        self.seen: dict[tuple[str, str], list] = {}  # (logger, template) -> [last written, held back]

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self.clock()
        entry = self.seen.get(key)
        if entry is not None and now - entry[0] < self.window:
            entry[1] += 1
            return False
        held = entry[1] if entry else 0
        self.seen[key] = [now, 0]
        if len(self.seen) > 1000:  # templates are few; this only guards against unbounded keys
            self.seen = {k: v for k, v in self.seen.items() if now - v[0] < self.window}
        if held:
            record.msg = f"{record.getMessage()} (and {held} more like it in the last {self.window:.0f} s)"
            record.args = None
        return True


def malformed_request_filter(record: logging.LogRecord) -> bool:
    """Drop aiohttp's ERROR-with-traceback for malformed HTTP: it is the client's fault, the
    client already got a 400 naming it, and the traceback quotes the offending header line,
    which may be an Authorization header. Errors in our own handlers are still logged."""
    from aiohttp.http_exceptions import HttpProcessingError

    exc = record.exc_info[1] if record.exc_info else None
    return not isinstance(exc, HttpProcessingError)


def _level(name: str, source: str) -> int:
    """logging would reject an unknown name with a bare ValueError, or a number with a TypeError."""
    level = logging.getLevelNamesMapping().get(name.upper())
    if level is None:
        raise SettingsError(f"{source}={name!r}: use one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    return level


class _TerminalFilter(logging.Filter):
    """freshstream's own warnings reach the terminal, as one line; libraries' logs never do."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING and record.name.split(".")[0] in ("connectors", "streams")


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{self.formatTime(record, '%H:%M:%S')} {record.levelname.lower()}: {' '.join(record.getMessage().split())}"


def log_to_files(data_dir: Path):
    """The in-process log (ingress, broker mirror, aiokafka) to dev.log and the access log to
    access.log, both in the data dir, so the terminal stays readable; returns the undo."""
    root, access = logging.getLogger(), logging.getLogger("freshstream.access")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        main_log = logging.FileHandler(data_dir / "dev.log")
        access_log = logging.FileHandler(data_dir / "access.log")
    except OSError as exc:
        raise data_dir_error(data_dir, exc) from None
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    main_log.setFormatter(fmt)
    access_log.setFormatter(fmt)
    terminal = logging.StreamHandler(sys.stderr)
    terminal.addFilter(_TerminalFilter())
    terminal.setFormatter(_OneLine())
    replaced = [h for h in root.handlers if isinstance(h, logging.StreamHandler)
                and not isinstance(h, logging.FileHandler) and h.stream in (sys.stderr, sys.stdout)]
    for handler in replaced:
        root.removeHandler(handler)
    root.addHandler(main_log)
    root.addHandler(terminal)
    access.addHandler(access_log)
    access.propagate = False

    def restore() -> None:
        for handler in (main_log, terminal):
            root.removeHandler(handler)
        for handler in replaced:
            root.addHandler(handler)
        access.removeHandler(access_log)
        access.propagate = True
        main_log.close()
        access_log.close()
    return restore
