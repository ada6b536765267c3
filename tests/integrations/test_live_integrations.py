"""Integration changes reach a running ingress within seconds, without restart."""

from __future__ import annotations

import time

import httpx
import pytest

from connectors.integrations.records import new_ingress_key
from connectors.integrations.registry import load_integrations
from tests.kafka_records import SECRETS, put_integration, wait_until
from tests.payloads import app_message, dumps

pytestmark = pytest.mark.integration


def status(ingress, name, key) -> int:
    return httpx.post(f"{ingress.url}/webhooks/freshchat/{name}", content=dumps(app_message()),
                      headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
                      timeout=30).status_code


def test_add_rotate_disable_take_effect_within_5_seconds(loop_thread, settings, ingress, add_integration):
    assert status(ingress, "acme-live", "fsk_none") == 401
    started = time.monotonic()
    old_key = add_integration("acme-live")
    assert status(ingress, "acme-live", old_key) == 202
    assert time.monotonic() - started < 5

    registry = loop_thread.run(load_integrations(settings))
    new_key = new_ingress_key()
    SECRETS.add(new_key)
    loop_thread.run(put_integration(settings, registry.get("acme-live").with_key(new_key)))
    wait_until(lambda: status(ingress, "acme-live", new_key) == 202, timeout=5, what="rotated key accepted")
    assert status(ingress, "acme-live", old_key) == 401

    loop_thread.run(put_integration(settings, registry.get("acme-live").with_key(new_key).disable()))
    wait_until(lambda: status(ingress, "acme-live", new_key) == 401, timeout=5, what="disabled integration refused")
