"""Integration health end to end: a real ingress, the worker's poller against a fake Freshchat,
the health topic on the embedded broker, and `freshstream integrations status`."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import httpx
import orjson
import pytest

from connectors.freshchat.feed import GroupFeed
from connectors.integrations.health import load_health
from connectors.integrations.health import WorkerHealth
from connectors.integrations.records import load_cipher, new_ingress_key, new_integration
from streams.domain.group_names import GroupNames
from streams.domain.integration_health import assess
from tests.kafka_records import SECRETS, put_integration, wait_until
from tests.payloads import dumps, user_messages
from tests.processes import settings_env

pytestmark = pytest.mark.integration
HOUR_AGO = "2020-01-01T00:00:00.000Z"  # long before any silent window


def post(ingress, name: str, key: str) -> int:
    return httpx.post(f"{ingress.url}/webhooks/freshchat/{name}", content=dumps(user_messages(1)),
                      headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                      timeout=10).status_code


def test_statuses_say_which_side_stopped(loop_thread, settings, ingress, fake_freshchat):
    cipher = load_cipher(settings)
    keys = {name: new_ingress_key() for name in ("busy", "quiet", "rotated", "broken-api")}
    SECRETS.update(keys.values())
    records = {name: dataclasses.replace(new_integration(name, "acme.freshchat.com", key), created_at=HOUR_AGO)
               for name, key in keys.items()}
    records["broken-api"] = dataclasses.replace(
        records["broken-api"], domain=fake_freshchat.url,
        api_key_enc=cipher.encrypt(b"fc_wrong_key_6b1d0c9e").decode())
    SECRETS.add("fc_wrong_key_6b1d0c9e")
    for record in records.values():
        loop_thread.run(put_integration(settings, record))
    wait_until(lambda: all(ingress.registry.get(n) == r for n, r in records.items()), what="integrations loaded")

    health = WorkerHealth(settings, "test:worker:0", lambda: feed.registry.all())
    feed = GroupFeed(settings, GroupNames(), on_status=health.api.report)
    loop_thread.run(health.start())
    loop_thread.run(feed.start())
    try:
        assert post(ingress, "busy", keys["busy"]) == 202
        assert post(ingress, "rotated", keys["rotated"]) == 202
        new_key = new_ingress_key()
        SECRETS.add(new_key)
        rotated = records["rotated"].with_key(new_key)
        loop_thread.run(put_integration(settings, rotated))
        # wait on the registry, not by posting: a post before the rotation lands is a 401 that counts
        wait_until(lambda: ingress.registry.get("rotated") == rotated, what="the rotation reached the ingress")
        assert post(ingress, "rotated", new_key) == 202
        refused = [post(ingress, "rotated", keys["rotated"]) for _ in range(settings.health_reject_threshold)]
        assert refused == [401] * settings.health_reject_threshold

        expected = {"busy": "operational", "quiet": "silent", "rotated": "rejecting",
                    "broken-api": "freshchat_api_failing"}

        seen = {}

        def statuses() -> dict:
            view = loop_thread.run(load_health(settings))
            seen.update({i.id: assess(i, view.records(i.id), settings)["status"] for i in records.values()})
            return seen

        try:
            wait_until(lambda: statuses() == expected, timeout=30, interval=0.2, what="the expected statuses")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: wanted {expected}, last saw {seen}") from None
        wait_until(lambda: {labels["integration"]: labels["status"] for labels, value in health.status_samples()
                            if value == 1} == expected, timeout=10, what="the worker's status gauge")
    finally:
        loop_thread.run(feed.stop())
        loop_thread.run(health.stop())

    result = subprocess.run([sys.executable, "-m", "connectors.cli", "integrations", "status", "--json"],
                            env=settings_env(settings), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    reports = {r["id"]: r for r in orjson.loads(result.stdout)}
    assert {name: r["status"] for name, r in reports.items()} == expected
    assert reports["rotated"]["last_reject"] == {"status": 401, "error": "unauthorized"}
    assert reports["rotated"]["recent_auth_failures"] == settings.health_reject_threshold
    assert reports["rotated"]["last_accepted_at"] is not None
    assert reports["quiet"]["last_accepted_at"] is None and reports["quiet"]["last_reject"] is None
    api = reports["broken-api"]["freshchat_api"]
    assert api["state"] == "failing" and api["http_status"] == 401 and "API key" in api["error"]
    assert reports["busy"]["freshchat_api"] == {"state": "not_configured"}

    table = subprocess.run([sys.executable, "-m", "connectors.cli", "integrations", "status"],
                           env=settings_env(settings), capture_output=True, text=True, timeout=60)
    assert table.returncode == 0, table.stderr[-2000:]
    assert "rotate-key rotated" in table.stdout, "the table says what to do about a rejecting integration"
    assert "broken-api: Freshchat's REST API fails" in table.stdout
    assert all(secret not in table.stdout + result.stdout for secret in SECRETS)
