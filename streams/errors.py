"""freshstream's own errors: one base, so the CLI has one place that turns any of them into one line.

Each message is written for the person at the terminal: it says what failed and which
setting, flag or file to fix. A third-party exception (aiokafka, httpx, an OSError) is
translated into one of these where freshstream meets that library, because only there
is it known what the failure means for the user.
"""

from __future__ import annotations

import os

__all__ = ["FreshstreamError", "SettingsError", "UsageError", "BrokerError", "IntegrationError",
           "SimulationError", "ChildError", "os_reason"]


class FreshstreamError(Exception):
    """An error whose message is complete: `freshstream: error: <message>` and nothing more."""


class SettingsError(FreshstreamError):
    """A FRESHSTREAM_* variable holds a value that cannot be used; the message names it."""


class UsageError(FreshstreamError):
    """A flag, argument or file named on the command line cannot be used; the message names it."""


class BrokerError(FreshstreamError):
    """Kafka (or the embedded broker) cannot be reached or used; the message says what to start or set."""


class IntegrationError(FreshstreamError):
    """An integration record or command cannot be carried out; the message says why."""


class SimulationError(FreshstreamError):
    """The ingress refused a simulated delivery or stayed unavailable; the message says which and why."""


class ChildError(FreshstreamError):
    """A process freshstream started and watches (dev's worker and broker) keeps dying; the
    message says which, how it ended, its last error line and where its log is."""


def os_reason(exc: OSError) -> str:
    """The system's words for an OSError ("Connection refused"), for quoting in a message
    that names the address itself: asyncio's own text repeats the address, or hides the cause."""
    if exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc) or type(exc).__name__  # negative errno: a DNS failure
