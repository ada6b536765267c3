"""The lifecycle every long-running part shares (connectors/service.py): what callers rely on.

Callers start and stop parts in any order the CLI and tests need (stop before start, start
again after stop), operators read the log at INFO, and a background loop that raises must
say so rather than end unseen. Checked on a bare service and on the Kafka-free parts.
"""

from __future__ import annotations

import asyncio
import logging

from connectors.ingress.connection_guard import ConnectionGuard
from connectors.integrations.health import HealthPublisher
from connectors.service import Service
from streams.settings import Settings

logger = logging.getLogger(__name__)


class Records(logging.Handler):
    def __init__(self, name: str) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._logger = logging.getLogger(name)

    def __enter__(self) -> "Records":
        self._level = self._logger.level
        self._logger.setLevel(logging.DEBUG)
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at_least(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


class Looping(Service):
    """A background loop that counts its runs and may be told to raise."""

    def __init__(self) -> None:
        super().__init__()
        self.runs = 0
        self.running = asyncio.Event()
        self.fail = False

    @Service.task
    async def _loop_forever(self) -> None:
        self.runs += 1
        self.running.set()
        if self.fail:
            raise ValueError("the loop broke")
        await asyncio.Event().wait()


def test_start_and_stop_log_nothing_at_info_and_stop_ends_the_loop():
    async def scenario():
        service = Looping()
        await service.start()
        await asyncio.wait_for(service.running.wait(), 5)
        (task,) = service._futures
        await service.stop()
        return task

    with Records(__name__) as log:
        task = asyncio.run(scenario())
    assert log.at_least(logging.INFO) == []
    assert any("Starting..." in r.getMessage() for r in log.records)  # at debug, where mode's lines go
    assert task.done()


def test_stop_before_start_is_harmless_and_start_after_stop_runs_the_loop_again():
    async def scenario():
        service = Looping()
        await service.stop()
        for _ in range(2):
            service.running.clear()
            await service.start()
            await asyncio.wait_for(service.running.wait(), 5)
            await service.stop()
        return service.runs

    assert asyncio.run(scenario()) == 2


def test_a_loop_that_raises_is_logged_with_its_traceback():
    async def scenario():
        service = Looping()
        service.fail = True
        await service.start()
        await asyncio.wait_for(service._crashed.wait(), 5)
        await service.stop()

    with Records(__name__) as log:
        asyncio.run(scenario())
    errors = [r for r in log.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "the loop broke" in errors[0].getMessage() and errors[0].exc_info


class Echo(Service):
    """A loop that answers every request, as the parts' `while True` loops keep working."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: asyncio.Queue = asyncio.Queue()
        self.answers: asyncio.Queue = asyncio.Queue()

    @Service.task
    async def _answer(self) -> None:
        while True:
            await self.answers.put(await self.requests.get())


class Owner(Service):
    def __init__(self) -> None:
        super().__init__()
        self.broken = self.add_dependency(Looping())
        self.broken.fail = True
        self.echo = self.add_dependency(Echo())


def test_a_crash_in_one_part_leaves_the_loops_of_the_others_working():
    """mode marks the whole tree crashed; our loops do not stop on that flag, only at stop()."""
    async def scenario():
        owner = Owner()
        await owner.start()
        await asyncio.wait_for(owner.broken._crashed.wait(), 5)
        owner.echo.requests.put_nowait("still there?")
        answer = await asyncio.wait_for(owner.echo.answers.get(), 5)
        await owner.stop()
        return owner.echo.crashed, answer

    with Records(__name__):
        assert asyncio.run(scenario()) == (True, "still there?")


class Transport:
    def __init__(self, closed: asyncio.Event) -> None:
        self._closed = closed

    def close(self) -> None:
        self._closed.set()

    def abort(self) -> None:
        self._closed.set()


def test_the_connection_guard_sweeps_while_running_and_again_after_a_restart():
    async def idle_connection_closed(guard: ConnectionGuard) -> None:
        closed = asyncio.Event()
        guard.protocol(asyncio.Protocol()).connection_made(Transport(closed))
        await asyncio.wait_for(closed.wait(), 5)

    async def scenario():
        guard = ConnectionGuard(max_connections=10, idle_timeout=0.01)
        for _ in range(2):
            await guard.start()
            await idle_connection_closed(guard)
            await guard.stop()
        return guard.closed_idle

    assert asyncio.run(scenario()) == 2


class Producer:
    """Records what was sent; every send is acknowledged at once."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future:
        self.sent.append(key)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def test_the_health_publisher_writes_what_is_left_when_it_stops():
    async def scenario():
        producer, pending = Producer(), [(b"k1", b"v1")]
        publisher = HealthPublisher(Settings(health_publish_seconds=3600), producer,
                                    [lambda: [pending.pop()] if pending else []])
        await publisher.start()
        await publisher.stop()
        return producer.sent

    assert asyncio.run(scenario()) == [b"k1"]
