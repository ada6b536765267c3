"""The group poller against a fake Freshchat over real HTTP and the real embedded broker."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from datetime import datetime, timezone

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.freshchat.poller import GroupPoller, RefreshSchedule, group_record
from connectors.integrations.records import load_cipher, new_ingress_key, new_integration
from connectors.kafka.clients import make_producer
from connectors.kafka.topics import ensure_topics
from tests.fake_freshchat import FakeFreshchat
from tests.kafka_records import SECRETS, read_topic, values, wait_until

pytestmark = pytest.mark.integration

RFC3339_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


class Registry:
    """The one thing the poller asks of an IntegrationRegistry: `.all()`."""

    def __init__(self, *integrations) -> None:
        self.integrations = list(integrations)

    def all(self):
        return list(self.integrations)


class LogLines(logging.Handler):
    """The poller's own log lines, to count how often an error is reported."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at(self, level: int, text: str) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == level and text in r.getMessage()]


class Harness:
    """A producer, an httpx client and the pollers of one test, all on the test loop."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.sent: list[bytes] = []
        self.pollers: list[GroupPoller] = []

    async def open(self) -> None:
        await ensure_topics(self.settings)
        self.producer = make_producer(self.settings)
        await self.producer.start()
        self.http = httpx.AsyncClient(timeout=5)

    async def close(self) -> None:
        for poller in self.pollers:
            await poller.stop()
        await self.http.aclose()
        await self.producer.stop()

    async def send(self, key: bytes, value: bytes) -> None:
        await self.producer.send_and_wait(self.settings.groups_topic, value, key=key)
        self.sent.append(key)

    def poller(self, registry, **options) -> GroupPoller:
        poller = GroupPoller(self.settings, registry, self.send, self.http, load_cipher(self.settings), **options)
        self.pollers.append(poller)
        return poller

    async def written_so_far(self) -> list:
        """Every poller record on the topic, up to a marker written now (one partition: total order)."""
        marker = f"marker:{uuid.uuid4().hex}".encode()
        await self.producer.send_and_wait(self.settings.groups_topic, b"{}", key=marker)
        return await _records_before(self.settings, marker)


async def _records_before(settings, marker: bytes, timeout: float = 10.0) -> list:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=100)
    await consumer.start()
    try:
        partition = TopicPartition(settings.groups_topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        records, deadline = [], asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                for record in batch:
                    if record.key == marker:
                        return records
                    if not record.key.startswith(b"marker:"):
                        records.append(record)
        raise AssertionError("the marker record never arrived")
    finally:
        await consumer.stop()


@pytest.fixture
def harness(loop_thread, settings):
    instance = Harness(settings)
    loop_thread.run(instance.open())
    yield instance
    loop_thread.run(instance.close())


def integration(settings, name: str, server: FakeFreshchat, api_key: str | None = None):
    """An integration whose domain is the fake server and whose API key is encrypted as the CLI does."""
    api_key = api_key or server.api_key
    ingress_key = new_ingress_key()
    SECRETS.update({api_key, ingress_key})
    encrypted = load_cipher(settings).encrypt(api_key.encode()).decode()
    return new_integration(name, server.url, ingress_key, api_key_enc=encrypted)


def names(records) -> dict[str, str]:
    return {r.key.decode(): orjson.loads(r.value)["name"] for r in records}


def test_groups_land_with_the_documented_key_and_value(loop_thread, settings, harness, fake_freshchat):
    fake_freshchat.add_group("g-support", "Customer Support")
    fake_freshchat.add_group("g-bill", "Facturation — Montréal")
    poller = harness.poller(Registry(integration(settings, "acme", fake_freshchat)))
    assert loop_thread.run(poller.poll_once()) == 2
    records = loop_thread.run(read_topic(settings, settings.groups_topic, 2))
    assert names(records) == {"acme:g-support": "Customer Support", "acme:g-bill": "Facturation — Montréal"}
    assert all(set(v) == {"name", "seen_at"} and RFC3339_MS.fullmatch(v["seen_at"]) for v in values(records))
    assert poller.status["acme"]["ok"] is True and poller.status["acme"]["error"] is None
    assert RFC3339_MS.fullmatch(poller.status["acme"]["last_success"])
    assert {r.auth for r in fake_freshchat.requests} == {"valid"}


def test_only_changed_names_are_written(loop_thread, settings, harness, fake_freshchat):
    fake_freshchat.add_group("g-1", "Sales")
    fake_freshchat.add_group("g-2", "Support")
    poller = harness.poller(Registry(integration(settings, "acme", fake_freshchat)))
    assert loop_thread.run(poller.poll_once()) == 2
    assert loop_thread.run(poller.poll_once("acme")) == 0
    assert len(loop_thread.run(harness.written_so_far())) == 2
    fake_freshchat.rename_group("g-2", "Support EMEA")
    assert loop_thread.run(poller.poll_once()) == 1
    records = loop_thread.run(harness.written_so_far())
    assert [(r.key, orjson.loads(r.value)["name"]) for r in records[2:]] == [(b"acme:g-2", "Support EMEA")]
    assert len(fake_freshchat.polls()) == 3  # each poll did ask Freshchat


def test_names_already_on_the_topic_are_not_rewritten(loop_thread, settings, harness, fake_freshchat):
    fake_freshchat.add_group("g-1", "Sales")
    fake_freshchat.add_group("g-2", "Support")
    poller = harness.poller(Registry(integration(settings, "acme", fake_freshchat)))
    poller.apply(*group_record("acme", "g-1", "Sales", datetime.now(timezone.utc)))
    poller.apply(*group_record("acme", "g-2", "Old name", datetime.now(timezone.utc)))
    assert loop_thread.run(poller.poll_once()) == 1
    assert harness.sent == [b"acme:g-2"]


def test_request_refresh_finds_a_new_group_without_waiting_for_the_interval(loop_thread, settings, harness,
                                                                              fake_freshchat):
    fake_freshchat.add_group("g-1", "Sales")
    poller = harness.poller(Registry(integration(settings, "acme", fake_freshchat)), interval=3600,
                            min_refresh_interval=0.05)
    loop_thread.run(poller.start())
    wait_until(lambda: poller.status.get("acme", {}).get("ok"), what="the first poll")
    fake_freshchat.add_group("g-new", "Escalations")
    poller.request_refresh("acme")  # from the test thread, as a worker in another thread could
    records = loop_thread.run(read_topic(settings, settings.groups_topic, 2, timeout=10))
    assert names(records) == {"acme:g-1": "Sales", "acme:g-new": "Escalations"}
    assert len(fake_freshchat.polls()) == 2


def test_refreshes_are_rate_limited_per_integration(loop_thread, settings, harness, fake_freshchat):
    fake_freshchat.add_group("g-1", "Sales")
    poller = harness.poller(Registry(integration(settings, "acme", fake_freshchat)), interval=3600,
                            min_refresh_interval=1.0)
    loop_thread.run(poller.start())
    wait_until(lambda: fake_freshchat.polls(), what="the first poll")
    for _ in range(5):
        poller.request_refresh("acme")
    polls = wait_until(lambda: len(fake_freshchat.polls()) >= 2 and fake_freshchat.polls(), what="the refresh")
    assert polls[1].at - polls[0].at >= 0.9  # 1.0 s between poll starts, less the first request's latency


def test_a_wrong_key_is_reported_per_integration_and_others_are_still_polled(loop_thread, settings, harness,
                                                                               fake_freshchat):
    fake_freshchat.add_group("g-1", "Sales")
    wrong = "fc_wrong_" + uuid.uuid4().hex
    bad = integration(settings, "bad", fake_freshchat, api_key=wrong)
    registry = Registry(bad, integration(settings, "acme", fake_freshchat))
    poller = harness.poller(registry, interval=3600)
    lines = LogLines()
    logging.getLogger("connectors.freshchat.poller").addHandler(lines)
    try:
        loop_thread.run(poller.start())
        wait_until(lambda: {"acme", "bad"} <= set(poller.status), what="both integrations polled")
        loop_thread.run(poller.poll_once("bad"))
        loop_thread.run(poller.poll_once("bad"))
    finally:
        logging.getLogger("connectors.freshchat.poller").removeHandler(lines)
    status = poller.status["bad"]
    assert status["ok"] is False and status["last_success"] is None and RFC3339_MS.fullmatch(status["last_error_at"])
    assert "integration bad" in status["error"] and "check the Freshchat API key" in status["error"]
    assert wrong not in status["error"] and fake_freshchat.api_key not in status["error"]
    assert len(lines.at(logging.ERROR, "integration bad")) == 1  # once per state change, not per poll
    assert poller.status["acme"]["ok"] is True
    records = loop_thread.run(harness.written_so_far())
    assert names(records) == {"acme:g-1": "Sales"}

    registry.integrations[0] = integration(settings, "bad", fake_freshchat)  # the operator fixes the key
    loop_thread.run(poller.poll_once("bad"))
    assert poller.status["bad"]["ok"] is True and poller.status["bad"]["last_error_at"] == status["last_error_at"]
    assert names(loop_thread.run(harness.written_so_far()))["bad:g-1"] == "Sales"


def test_disabled_integrations_and_those_without_an_api_key_are_not_polled(loop_thread, settings, harness,
                                                                            fake_freshchat):
    fake_freshchat.add_group("g-1", "Sales")
    keyless = new_integration("keyless", fake_freshchat.url, new_ingress_key())
    disabled = integration(settings, "off", fake_freshchat).disable()
    poller = harness.poller(Registry(keyless, disabled))
    assert loop_thread.run(poller.poll_once()) == 0
    assert fake_freshchat.requests == [] and poller.status == {}


def test_an_integration_added_after_start_is_polled_without_waiting_for_the_interval(loop_thread, settings,
                                                                                      harness, fake_freshchat):
    fake_freshchat.add_group("g-1", "Sales")
    registry = Registry()  # as at a worker's start, before the integrations topic is loaded
    reported = []
    poller = harness.poller(registry, interval=3600, on_status=lambda i, status: reported.append((i, status["ok"])))
    loop_thread.run(poller.start())
    registry.integrations.append(integration(settings, "acme", fake_freshchat))
    wait_until(lambda: poller.status.get("acme", {}).get("ok"), timeout=10, what="the new integration polled")
    assert reported == [("acme", True)] and len(fake_freshchat.polls()) == 1


# The refresh schedule is pure: its rules are checked here with explicit times.

def test_schedule_coalesces_repeated_requests_into_one_poll():
    schedule = RefreshSchedule(min_interval=10)
    for now in (0.0, 0.1, 0.2):
        schedule.request("acme", now)
    assert schedule.due(0.3) == ["acme"]
    schedule.started("acme", 0.3)
    schedule.served("acme", 0.3)
    assert schedule.due(100) == [] and schedule.next_due() == float("inf")


def test_schedule_keeps_a_request_made_during_a_poll_and_rate_limits_it():
    schedule = RefreshSchedule(min_interval=10)
    schedule.request("acme", 0.0)
    schedule.started("acme", 1.0)
    schedule.request("acme", 2.0)  # the poll that started at 1.0 may not see what prompted this
    schedule.served("acme", 1.0)
    assert schedule.due(10.9) == [] and schedule.next_due() == 11.0
    assert schedule.due(11.0) == ["acme"] and schedule.due(11.0, busy={"acme"}) == []
    assert schedule.next_due(busy={"acme"}) == float("inf")


def test_schedule_serves_a_first_request_at_once():
    schedule = RefreshSchedule(min_interval=10)
    schedule.request("acme", 5.0)
    assert schedule.due(5.0) == ["acme"] and schedule.due(5.0 - 1e-9) == []
