"""The fake injixo answers as the sink tests rely on: auth, validation, idempotency, faults and exact sums."""

from __future__ import annotations

import httpx
import pytest

from tests.fake_injixo import PATH


def row(queue="Support", timestamp="2024-05-06T09:01:00.000Z", offered=1, handled=1, duration=61.2, **changes):
    return {"properties": {"offered": offered, "handled": handled, "duration": duration}, "queueName": queue,
            "queueIdentifier": f"acme/{queue}", "timestamp": timestamp, "channel": "chats", **changes}


def post(fake, key: str | None, configuration_id: str, rows: list, idempotency_key: str | None = None,
         **body) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    document = body or {"data": rows, "meta": {"integrationConfigurationId": configuration_id}}
    return httpx.post(fake.url + PATH, json=document, headers=headers, timeout=10)


def test_a_key_is_good_for_its_own_configuration_only(fake_injixo):
    key, other = fake_injixo.add_key("cfg-1"), fake_injixo.add_key("cfg-2")
    assert post(fake_injixo, key, "cfg-1", [row()]).status_code == 201
    assert post(fake_injixo, None, "cfg-1", [row()]).json()["error"] == "unauthorized"
    assert post(fake_injixo, "wrong", "cfg-1", [row()]).status_code == 401
    forbidden = post(fake_injixo, other, "cfg-1", [row()])
    assert forbidden.status_code == 403 and forbidden.json()["error"] == "forbidden"
    fake_injixo.revoke(key)
    assert post(fake_injixo, key, "cfg-1", [row()]).status_code == 401
    assert [r.auth for r in fake_injixo.requests] == ["valid", "missing", "invalid", "other_configuration", "revoked"]
    assert len(fake_injixo.rows) == 1 and fake_injixo.rows[0]["configuration_id"] == "cfg-1"
    assert all(key not in repr(r) and other not in repr(r) for r in fake_injixo.requests)


@pytest.mark.parametrize("broken, field", [
    (row(channel="calls"), "data[0].channel"),
    (row(offered=1.5), "data[0].properties.offered"),
    (row(duration="61"), "data[0].properties.duration"),
    (row(timestamp="2024-05-06T09:01:00"), "data[0].timestamp"),
    (row(queueName=""), "data[0].queueName"),
    (row(extra=1), "data[0].extra"),
    ({k: v for k, v in row().items() if k != "queueIdentifier"}, "data[0].queueIdentifier"),
])
def test_a_malformed_row_is_a_400_naming_the_field(fake_injixo, broken, field):
    key = fake_injixo.add_key("cfg-1")
    answer = post(fake_injixo, key, "cfg-1", [row(), broken])
    assert answer.status_code == 400 and answer.json()["field"] == field.replace("[0]", "[1]")
    assert fake_injixo.rows == []
    assert post(fake_injixo, key, "cfg-1", [], data=[row()]).json()["field"] == "meta"
    assert post(fake_injixo, key, "cfg-1", []).json()["field"] == "data"


def test_a_repeated_idempotency_key_is_answered_again_and_counted_once(fake_injixo):
    key = fake_injixo.add_key("cfg-1")
    first = post(fake_injixo, key, "cfg-1", [row(), row()], idempotency_key="c-1/1")
    again = post(fake_injixo, key, "cfg-1", [row(), row()], idempotency_key="c-1/1")
    assert (first.status_code, first.json()) == (again.status_code, again.json()) == (201, {"accepted": 2})
    assert len(fake_injixo.rows) == 2 and fake_injixo.duplicates == 1 and fake_injixo.reused_keys == 0
    assert [r.duplicate for r in fake_injixo.requests] == [False, True]
    post(fake_injixo, key, "cfg-1", [row(offered=2)], idempotency_key="c-1/1")
    assert fake_injixo.reused_keys == 1 and len(fake_injixo.rows) == 2, "a reused key with another body is seen"


def test_injected_failures_come_first_with_retry_after_then_it_accepts(fake_injixo):
    key = fake_injixo.add_key("cfg-1")
    fake_injixo.fail_next(2, status=429, retry_after=3)
    fake_injixo.fail_next(1, status=503)
    answers = [post(fake_injixo, key, "cfg-1", [row()], idempotency_key="k") for _ in range(4)]
    assert [a.status_code for a in answers] == [429, 429, 503, 201]
    assert answers[0].headers["Retry-After"] == "3" and "Retry-After" not in answers[2].headers
    assert len(fake_injixo.rows) == 1 and fake_injixo.duplicates == 0, "a failed request is not remembered"


def test_sums_add_corrections_exactly_by_utc_interval_and_drop_what_cancels_out(fake_injixo):
    key = fake_injixo.add_key("cfg-1")
    rows = [row(duration=0.1), row(duration=0.2), row(timestamp="2024-05-06T11:14:59.999+02:00", duration=0.3),
            row(offered=-1, handled=-1, duration=-0.1), row(offered=0, handled=0, duration=0.1),  # a correction
            row("Sales", "2024-05-06T09:15:00.000Z", duration=30), row("Sales", "2024-05-06T09:15:00.000Z",
                                                                       offered=-1, handled=-1, duration=-30)]
    assert post(fake_injixo, key, "cfg-1", rows).status_code == 201
    assert fake_injixo.sums() == {("cfg-1", "acme/Support", "Support", "2024-05-06T09:00:00.000Z"):
                                  {"offered": 2, "handled": 2, "duration": 0.6}}
    assert list(fake_injixo.sums(minutes=60)) == [("cfg-1", "acme/Support", "Support", "2024-05-06T09:00:00.000Z")]
