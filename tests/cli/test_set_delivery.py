"""`integrations set-delivery` and delivery health in `integrations status`, as an operator runs them: the real
CLI in a child process, the embedded broker, and the records the sink would read and write."""

from __future__ import annotations

import secrets

import orjson
import pytest

from connectors.integrations.records import decrypt_injixo_key, load_cipher
from connectors.integrations.registry import load_integrations
from connectors.kafka.clients import make_producer
from streams.domain.integration_health import health_key
from streams.domain.times import utc_now_text
from tests.cli.test_integration_lifecycle import cli, error, ok
from tests.kafka_records import SECRETS

pytestmark = pytest.mark.integration


def stored(loop_thread, settings, name: str):
    return loop_thread.run(load_integrations(settings)).get(name)


def test_mistakes_are_one_line_before_any_broker_is_asked(settings):
    unreachable = settings.replace(kafka_bootstrap="127.0.0.1:1")  # would time out if the broker were asked first
    assert error(unreachable, "set-delivery", "acme") == (
        "'integrations set-delivery acme' needs --injixo-configuration-id ID (the integrationConfigurationId "
        "injixo shows for the integration), or --clear to stop delivery")
    assert error(unreachable, "set-delivery", "acme", "--injixo-configuration-id", "  ",
                 "--injixo-api-key-env", "HOME") == (
        "--injixo-configuration-id is empty: give injixo's integrationConfigurationId")
    assert error(unreachable, "set-delivery", "acme", "--injixo-configuration-id", "cfg-1") == (
        "set-delivery needs the injixo API key from --injixo-api-key-env VAR or --injixo-api-key-file PATH "
        "(never on the command line, where ps would show it)")
    assert error(unreachable, "set-delivery", "acme", "--injixo-configuration-id", "cfg-1",
                 "--injixo-api-key-env", "FRESHSTREAM_TEST_NO_SUCH_VARIABLE") == (
        "--injixo-api-key-env FRESHSTREAM_TEST_NO_SUCH_VARIABLE: that variable is unset or empty")
    assert error(unreachable, "set-delivery", "acme", "--injixo-configuration-id", "cfg-1",
                 "--injixo-api-key-file", "/nonexistent/injixo.key") == (
        "--injixo-api-key-file /nonexistent/injixo.key: cannot read it (No such file or directory)")
    assert error(unreachable, "set-delivery", "acme", "--clear", "--injixo-configuration-id", "cfg-1") == (
        "--clear stops delivery to injixo and takes no --injixo-configuration-id; drop one or the other")


def test_set_delivery_stores_the_key_encrypted_and_clear_stops_it(loop_thread, settings, tmp_path):
    ok(settings, "add", "acme", "--domain", "acme.freshchat.com", "--json")
    key = "inj_" + secrets.token_urlsafe(24)
    SECRETS.add(key)
    assert error(settings, "set-delivery", "nosuch", "--injixo-configuration-id", "cfg-1",
                 "--injixo-api-key-file", str(_key_file(tmp_path, key))) == (
        "no integration named 'nosuch'; 'freshstream integrations list' shows them")

    text = ok(settings, "set-delivery", "acme", "--injixo-configuration-id", "cfg-1",
              "--injixo-api-key-file", str(_key_file(tmp_path, f"  {key}\n")))
    assert text == ("integration acme delivers to injixo configuration cfg-1; a running 'freshstream deliver "
                    "injixo' picks it up within seconds (no restart)")
    record = stored(loop_thread, settings, "acme")
    assert record.delivers_to_injixo and record.injixo_configuration_id == "cfg-1"
    assert key not in record.to_json().decode(), "the key is stored encrypted"
    assert decrypt_injixo_key(load_cipher(settings), record) == key

    table = ok(settings, "list")
    assert table.splitlines()[0].split()[-1] == "DELIVERY" and table.splitlines()[1].endswith("configured")
    shown = orjson.loads(ok(settings, "show", "acme", "--json"))
    assert shown["injixo_delivery"] == "configured" and shown["injixo_configuration_id"] == "cfg-1"

    assert orjson.loads(ok(settings, "set-delivery", "acme", "--clear", "--json")) == {
        "id": "acme", "injixo_configuration_id": None, "injixo_api_key": "not set"}
    record = stored(loop_thread, settings, "acme")
    assert not record.delivers_to_injixo and record.injixo_api_key_enc is None
    assert ok(settings, "list").splitlines()[1].endswith("not configured")
    assert ok(settings, "set-delivery", "acme", "--clear") == (
        "integration acme does not deliver to injixo; nothing changed")


def test_set_delivery_reads_the_key_from_a_variable_and_prints_json_without_it(loop_thread, settings):
    ok(settings, "add", "acme", "--domain", "acme.freshchat.com", "--json")
    key = "inj_" + secrets.token_urlsafe(24)
    SECRETS.add(key)
    result = cli(settings, "set-delivery", "acme", "--injixo-configuration-id", "cfg-2",
                 "--injixo-api-key-env", "INJIXO_KEY", "--json", extra_env={"INJIXO_KEY": key})
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout) == {"id": "acme", "injixo_configuration_id": "cfg-2", "injixo_api_key": "set"}
    assert key not in result.stdout + result.stderr
    assert decrypt_injixo_key(load_cipher(settings), stored(loop_thread, settings, "acme")) == key


def test_status_shows_delivery_and_says_what_to_do(loop_thread, settings, tmp_path):
    for name in ("acme", "beta", "gamma"):
        ok(settings, "add", name, "--domain", "acme.freshchat.com", "--json")
        key = "inj_" + secrets.token_urlsafe(24)
        SECRETS.add(key)
        ok(settings, "set-delivery", name, "--injixo-configuration-id", f"cfg-{name}",
           "--injixo-api-key-file", str(_key_file(tmp_path, key)))
    ok(settings, "add", "plain", "--domain", "acme.freshchat.com", "--json")
    now = utc_now_text()
    loop_thread.run(_publish(settings, [
        _delivery("acme", "stopped", last_failure_at=now, last_failure_status=401,
                  last_failure_error="injixo refused the API key", backlog=37,
                  backlog_oldest_at="2027-01-15T07:00:00.000Z"),
        _delivery("beta", "failing", last_failure_at=now, last_failure_status=503,
                  last_failure_error="HTTP 503 from injixo", backlog=2, backlog_oldest_at=now),
        _delivery("gamma", "failing", url="http://127.0.0.1:1", last_failure_at=now, last_failure_status=None,
                  last_failure_error="connection refused")]))

    reports = {r["id"]: r for r in orjson.loads(ok(settings, "status", "--json"))}
    assert {name: r["delivery"]["state"] for name, r in reports.items()} == {
        "acme": "stopped", "beta": "failing", "gamma": "failing", "plain": "not_configured"}
    assert all("delivery_failing" in reports[name]["problems"] for name in ("acme", "beta", "gamma"))
    assert "delivery_failing" not in reports["plain"]["problems"]
    assert reports["acme"]["delivery"]["backlog"] == 37

    table = ok(settings, "status")
    header, *rows = table.splitlines()[:5]
    assert header.split()[-1] == "DELIVERY"
    assert [row.split()[-1] for row in rows] == ["stopped", "failing", "failing", "configured"]
    assert ("acme: injixo answered 401: the injixo API key was revoked or mistyped, so posting for acme is "
            "stopped; run 'freshstream integrations set-delivery acme --injixo-configuration-id cfg-acme "
            "--injixo-api-key-env VAR' with a valid key (the sink resumes without a restart); 37 contact(s) "
            "wait, the oldest since 2027-01-15T07:00:00.000Z") in table
    assert "beta: injixo answered 503 (HTTP 503 from injixo); the sink retries with backoff; 2 contact(s)" in table
    assert "gamma: cannot reach injixo at http://127.0.0.1:1 (connection refused); check the URL" in table


def _key_file(tmp_path, text: str):
    path = tmp_path / f"injixo-{secrets.token_hex(4)}.key"
    path.write_text(text)
    return path


def _delivery(integration: str, state: str, **fields) -> tuple[bytes, bytes]:
    instance = "test:deliver-injixo:1"
    doc = {"v": 1, "integration": integration, "source": "delivery", "instance": instance, "sink": "injixo",
           "published_at": utc_now_text(), "state": state, "url": "https://api.injixo.com",
           "last_delivered_at": None, "last_delivered_contact": None, "delivered_contacts": 0,
           "last_failure_at": None, "last_failure_status": None, "last_failure_error": None,
           "backlog": 0, "backlog_oldest_at": None, **fields}
    return health_key(integration, "delivery", instance), orjson.dumps(doc)


async def _publish(settings, records) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(settings.health_topic, value, key=key)
    finally:
        await producer.stop()
