"""Progress of a long verb on stderr: a bar redrawn in place on a terminal, a line now and then otherwise.

A bar's carriage returns make a log file or a CI console unreadable, so when stderr is not
a terminal the same progress is one plain line every `interval` seconds, and one at the end
of each phase (so a log always shows what was read). stdout is never touched: --json output
stays one document a script can parse.
"""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]

_BAR = 30


class Progress:
    """A callable (what, done, total) for connectors.replay.replay and the like."""

    def __init__(self, verb: str, stream=None, interval: float | None = None, clock=time.monotonic) -> None:
        self.verb, self.stream, self.clock = verb, stream or sys.stderr, clock
        self.tty = self.stream.isatty()
        self.interval = interval if interval is not None else (0.1 if self.tty else 10.0)
        self._shown_at: float | None = None
        self._drawn = False  # a bar is on the terminal's current line
        self._finished: set[str] = set()

    def __call__(self, what: str, done: int, total: int) -> None:
        now = self.clock()
        complete = done >= total
        if complete and what in self._finished:
            return
        due = self._shown_at is None or now - self._shown_at >= self.interval
        if not (due or complete):
            return
        self._shown_at = now
        share = done / total if total else 1.0
        if self.tty:
            bar = "#" * int(share * _BAR)
            self.stream.write(f"\r{self.verb}: {what} [{bar:<{_BAR}}] {share:6.1%}  {done:,}/{total:,} records")
            self._drawn = True
            if complete:
                self.stream.write("\n")
                self._drawn = False
        else:
            self.stream.write(f"{self.verb}: {what}: {done:,}/{total:,} records ({share:.1%})\n")
        if complete:
            self._finished.add(what)
        self.stream.flush()

    def close(self) -> None:
        """End a bar left mid-line (an error stopped the work), so the error line starts clean."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
