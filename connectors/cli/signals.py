"""Running until the operator stops it: SIGINT and SIGTERM both end a verb cleanly."""

from __future__ import annotations

import asyncio
import signal
import sys

__all__ = ["serve", "until_signal", "until_signal_or"]


async def serve(services: list, name: str) -> int:
    """Start services in order, say so once, and stop them in reverse when a signal comes."""
    started = []
    try:
        for service in services:
            await service.start()
            started.append(service)
        print(f"freshstream {name} running; Ctrl-C stops it", file=sys.stderr)
        await until_signal()
    finally:
        for service in reversed(started):
            await service.stop()
    return 0


async def until_signal_or(work) -> int:
    """Run work until it ends or SIGINT/SIGTERM arrives (then exit 0, as `tail -f` users expect)."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(until_signal())
    done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, waiter):
        pending.cancel()
    await asyncio.gather(task, waiter, return_exceptions=True)
    return task.result() if task in done and not task.cancelled() else 0


async def until_signal() -> None:
    """Wait for SIGINT or SIGTERM, so both stop the process cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
