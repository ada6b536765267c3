"""The lifecycle of freshstream's long-running parts: mode's Service, the library Faust is built on.

mode already gives what each part used to hand-roll: background tasks cancelled and awaited
at stop, parts that own others starting them after themselves and stopping them first, and a
task that raises logged with its traceback instead of dying unseen. Two of its defaults do
not suit our callers, so this base changes them:

- mode logs "[^Name]: Starting..." and "Stopping..." at INFO through the subclass's own
  module logger, which runs at FRESHSTREAM_LOG_LEVEL, not the quieter library level: at
  debug they stay out of the operator's terminal, as before.
- mode asserts when start() follows stop(); our parts have always been restartable that
  way (a broker restarted in place keeps its port and data dir), so start() resets first.

A part whose children hold resources of one run (a producer, an HTTP client) adds them in
on_start and removes them in on_shutdown, so a restart builds fresh ones.
"""

from __future__ import annotations

import mode

__all__ = ["Service"]


class Service(mode.Service):
    """mode.Service, quiet at start and stop, and restartable by start()."""

    mundane_level = "debug"

    async def start(self) -> None:
        if self._stopped.is_set():
            self.service_reset()
        await super().start()
