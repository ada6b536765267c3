"""Shared fixtures: a clean environment, an event loop thread, the embedded broker, and log capture."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path

import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.ingress.service import IngressService
from connectors.integrations.records import new_ingress_key, new_integration
from connectors.kafka.broker import EmbeddedBroker, free_port
from streams.settings import ENV_PREFIX, Settings
from tests.kafka_records import SECRETS, put_integration, public_pem, wait_until
from tests.fake_freshchat import fake_freshchat  # noqa: F401  (a fixture for every test module)
from tests.fake_injixo import fake_injixo  # noqa: F401  (likewise)
from tests.processes import WorkerProcess



class LoopThread:
    """An asyncio loop in a background thread, so sync tests can drive async services."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 300.0):
        """Wait for coro; the outer timeout is only a backstop, so that a coroutine's own
        deadline (read_topic's, say) fires first and fails with what it saw."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro):
        """Start coro on the loop; the caller waits on the returned future when it needs the result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class LogCapture(logging.Handler):
    """Keeps every formatted log line of the session, DEBUG included."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a bad record must not hide the others
            self.lines.append(repr(record.msg))


CAPTURE = LogCapture()


def pytest_configure(config):
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    root.addHandler(CAPTURE)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Keep the developer's FRESHSTREAM_* settings out of the tests."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def no_secrets_in_logs():
    """Fail any test during which a known secret reached a log line."""
    start = len(CAPTURE.lines)
    yield
    leaked = [line for line in CAPTURE.lines[start:] for secret in SECRETS if secret in line]
    assert not leaked, f"a secret reached the logs: {leaked[:3]}"


@pytest.fixture(scope="session")
def loop_thread():
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("freshstream")


def test_settings(data_dir: Path, port: int, **changes) -> Settings:
    """Settings for a test: embedded broker on `port`, fast timeouts, few partitions."""
    base = dict(kafka_bootstrap=f"127.0.0.1:{port}", broker_port=port, data_dir=data_dir,
                topic_partitions=3, produce_timeout=3.0, retry_after_seconds=1,
                secret_key="")
    base.update(changes)
    return Settings(**base)


test_settings.__test__ = False  # a helper, not a test


@pytest.fixture(scope="session")
def broker(loop_thread, session_dir):
    """One embedded broker for the session, on a free port."""
    port = free_port()
    instance = EmbeddedBroker(test_settings(session_dir, port, kafka_bootstrap=""), port)
    loop_thread.run(instance.start())
    yield instance
    loop_thread.run(instance.stop())


@pytest.fixture
def settings(broker, tmp_path) -> Settings:
    """Settings pointing at the session broker, with a per-test data dir and topics."""
    suffix = uuid.uuid4().hex[:8]
    return test_settings(tmp_path, broker.port, raw_topic=f"raw-{suffix}", dlq_topic=f"dlq-{suffix}",
                         contacts_topic=f"contacts-{suffix}", groups_topic=f"groups-{suffix}",
                         integrations_topic=f"integrations-{suffix}", worker_app_id=f"worker-{suffix}",
                         health_topic=f"health-{suffix}", intervals_topic=f"intervals-{suffix}",
                         delivery_app_id=f"deliver-{suffix}", delivery_state_topic=f"delivery-{suffix}",
                         health_publish_seconds=0.2,
                         group_wait_seconds=3.0, log_level="DEBUG", library_log_level="DEBUG")


@pytest.fixture
def ingress(loop_thread, settings):
    """A running ingress on a free port of 127.0.0.1."""
    service = IngressService(settings, "127.0.0.1", 0)
    loop_thread.run(service.start())
    yield service
    loop_thread.run(service.stop())


@pytest.fixture
def worker(settings, tmp_path):
    """A `freshstream worker` process on the test's topics, ready (partitions assigned)."""
    process = WorkerProcess(settings, tmp_path).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def rsa_key():
    """A webhook signing key pair, like the one Freshchat holds."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def add_integration(loop_thread, settings, ingress, rsa_key):
    """Create an integration through the store and wait until the ingress sees it."""

    def add(name: str, *, signed: bool = False) -> str:
        key = new_ingress_key()
        SECRETS.add(key)
        pem = public_pem(rsa_key) if signed else None
        record = new_integration(name, "acme.freshchat.com", key, webhook_public_key=pem)
        loop_thread.run(put_integration(settings, record))
        wait_until(lambda: ingress.registry.get(name) == record, what=f"integration {name} loaded")
        return key

    return add
