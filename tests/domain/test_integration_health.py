"""Integration health without a broker: what an ingress and a poller record, and what assess makes of it."""

from __future__ import annotations

import orjson
import pytest

from connectors.integrations.records import new_integration
from streams.domain.integration_health import STATUSES, ApiHealth, HealthView, IngressActivity, assess, health_key
from streams.settings import Settings

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
HOUR_AGO = "2027-01-15T07:00:00.000Z"
SETTINGS = Settings(health_silent_seconds=900, health_reject_window_seconds=600, health_reject_threshold=3)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def integration(name="acme", *, api_key=True, disabled=False, created_at=HOUR_AGO, injixo=False):
    record = new_integration(name, "acme.freshchat.com", "key", api_key_enc="enc" if api_key else None)
    record = record.__class__(**{**record.__dict__, "created_at": created_at, "disabled": disabled})
    return record.with_injixo("cfg-1", "enc-injixo") if injixo else record


def view_of(*sources) -> HealthView:
    view = HealthView()
    for source in sources:
        for key, value in source.take_records():
            view.apply(key, value)
    return view


def status(record, view, now=NOW) -> dict:
    return assess(record, view.records(record.id), SETTINGS, now=now)


def test_recent_traffic_and_a_working_api_are_operational():
    clock = Clock(NOW - 60)
    ingress, api = IngressActivity("host:ingress:8080", clock), ApiHealth("host:worker:6066", clock)
    ingress.accepted("acme")
    api.report("acme", {"ok": True, "last_success": "2027-01-15T07:59:00.000Z"})
    report = status(integration(), view_of(ingress, api))
    assert report["status"] == "operational" and report["problems"] == []
    assert report["last_accepted_at"] == "2027-01-15T07:59:00.000Z"
    assert report["freshchat_api"]["state"] == "ok"


def test_no_accepted_event_for_the_silent_time_is_silent_counting_from_creation():
    assert status(integration(), HealthView())["status"] == "silent"  # created an hour ago, nothing since
    fresh = integration(created_at="2027-01-15T07:59:00.000Z")
    assert status(fresh, HealthView())["status"] == "operational"
    clock = Clock(NOW - 901)
    ingress = IngressActivity("i", clock)
    ingress.accepted("acme")
    assert status(integration(), view_of(ingress))["status"] == "silent"


def test_a_few_401s_within_the_window_make_it_rejecting_even_with_other_traffic():
    clock = Clock(NOW - 30)
    ingress = IngressActivity("i", clock)
    ingress.accepted("acme")
    for _ in range(2):
        clock.now += 1
        ingress.rejected("acme", 401, "unauthorized")
    view = view_of(ingress)
    assert status(integration(), view)["status"] == "operational", "two 401s are below the threshold"
    clock.now += 1
    ingress.rejected("acme", 401, "unauthorized")
    report = status(integration(), view_of(ingress))
    assert report["status"] == "rejecting" and report["recent_auth_failures"] == 3
    assert report["last_reject"] == {"status": 401, "error": "unauthorized"}
    later = status(integration(), view_of(ingress), now=NOW + 600)
    assert "rejecting" not in later["problems"], "401s older than the window no longer count"


def test_other_rejects_are_reported_but_do_not_count_as_rejecting():
    clock = Clock(NOW - 10)
    ingress = IngressActivity("i", clock)
    ingress.accepted("acme")
    for _ in range(5):
        ingress.rejected("acme", 400, "invalid_json")
    report = status(integration(), view_of(ingress))
    assert report["status"] == "operational"
    assert report["last_reject"] == {"status": 400, "error": "invalid_json"}


def test_401s_seen_by_two_ingress_instances_add_up():
    clock = Clock(NOW - 10)
    first, second = IngressActivity("a", clock), IngressActivity("b", clock)
    first.accepted("acme")
    first.rejected("acme", 401, "unauthorized")
    clock.now += 1
    second.rejected("acme", 401, "unauthorized")
    clock.now += 1
    second.rejected("acme", 401, "unauthorized")
    assert status(integration(), view_of(first, second))["status"] == "rejecting"


def test_the_latest_api_record_decides_across_workers():
    old, new = Clock(NOW - 100), Clock(NOW - 5)
    failing, working = ApiHealth("w1", old), ApiHealth("w2", new)
    failing.report("acme", {"ok": False, "error": "acme: Freshchat refused the API key", "http_status": 401})
    working.report("acme", {"ok": True})
    ingress = IngressActivity("i", new)
    ingress.accepted("acme")
    assert status(integration(), view_of(failing, working, ingress))["status"] == "operational"
    failing2 = ApiHealth("w1", Clock(NOW - 1))
    failing2.report("acme", {"ok": False, "error": "acme: Freshchat refused the API key", "http_status": 401})
    report = status(integration(), view_of(failing2, working, ingress))
    assert report["status"] == "freshchat_api_failing"
    assert report["freshchat_api"]["http_status"] == 401
    assert "refused the API key" in report["freshchat_api"]["error"]


def test_the_most_specific_problem_is_the_status_and_all_are_listed():
    clock = Clock(NOW - 2000)
    ingress, api = IngressActivity("i", clock), ApiHealth("w", clock)
    ingress.accepted("acme")
    clock.now = NOW - 5
    for _ in range(3):
        ingress.rejected("acme", 401, "unauthorized")
    api.report("acme", {"ok": False, "error": "HTTP 503", "http_status": 503})
    report = status(integration(), view_of(ingress, api))
    assert report["problems"] == ["rejecting", "freshchat_api_failing", "silent"]
    assert report["status"] == "rejecting"
    assert status(integration(disabled=True), view_of(ingress, api))["status"] == "disabled"


def test_without_an_api_key_the_api_is_not_configured_rather_than_failing():
    report = status(integration(api_key=False), HealthView())
    assert report["freshchat_api"] == {"state": "not_configured"}
    assert "freshchat_api_failing" not in report["problems"]
    assert status(integration(), HealthView())["freshchat_api"] == {"state": "unknown"}


def test_only_changed_integrations_are_republished():
    ingress = IngressActivity("i", Clock(NOW))
    ingress.accepted("acme")
    ingress.accepted("beta")
    assert [k for k, _ in ingress.take_records()] == [b"acme/ingress/i", b"beta/ingress/i"]
    assert ingress.take_records() == []
    ingress.rejected("beta", 415, "unsupported_media_type")
    (key, value), = ingress.take_records()
    assert key == b"beta/ingress/i" and orjson.loads(value)["accepted_requests"] == 1


def test_the_view_ignores_unreadable_records_and_honours_tombstones():
    view = HealthView()
    view.apply(b"acme/ingress/i", b"not json")
    view.apply(b"acme/ingress/j", orjson.dumps({"v": 99}))
    assert view.records("acme") == []
    view.apply(b"acme/ingress/i", orjson.dumps({"v": 1, "source": "ingress"}))
    assert len(view.records("acme")) == 1
    view.apply(b"acme/ingress/i", None)
    assert view.records("acme") == []


def delivery(instance: str, state: str = "ok", **fields) -> tuple[bytes, bytes]:
    """A delivery sink's health record, as the injixo sink publishes it."""
    doc = {"v": 1, "integration": "acme", "source": "delivery", "instance": instance, "sink": "injixo",
           "published_at": "2027-01-15T07:59:59.000Z", "state": state, "url": "https://api.injixo.com",
           "last_delivered_at": None, "last_delivered_contact": None, "delivered_contacts": 0,
           "last_failure_at": None, "last_failure_status": None, "last_failure_error": None,
           "backlog": 0, "backlog_oldest_at": None, **fields}
    return health_key("acme", "delivery", instance), orjson.dumps(doc)


def busy_view(*records) -> HealthView:
    """Recent traffic, so that only delivery can be the problem."""
    ingress = IngressActivity("i", Clock(NOW - 10))
    ingress.accepted("acme")
    view = view_of(ingress)
    for key, value in records:
        view.apply(key, value)
    return view


def test_delivery_is_not_configured_without_set_delivery_and_unknown_before_a_sink_reports():
    stray = delivery("h:deliver-injixo:1", "stopped", last_failure_status=401, last_failure_at=HOUR_AGO)
    report = status(integration(), busy_view(stray))
    assert report["delivery"] == {"state": "not_configured"}, "a record left from before --clear does not count"
    assert report["status"] == "operational"
    just_configured = configured_at(integration(injixo=True), "2027-01-15T07:59:30.000Z")
    assert status(just_configured, busy_view())["delivery"] == {"state": "unknown"}
    assert status(just_configured, busy_view())["status"] == "operational"


def configured_at(record, moment: str):
    return record.__class__(**{**record.__dict__, "updated_at": moment})


def test_no_sink_reporting_long_after_set_delivery_is_not_running_and_old_records_do_not_speak():
    long_ago = configured_at(integration(injixo=True), HOUR_AGO)
    report = status(long_ago, busy_view())
    assert report["delivery"]["state"] == "not_running" and report["status"] == "delivery_failing"
    gone = delivery("h:deliver-injixo:1", "stopped", published_at=HOUR_AGO, last_failure_status=401,
                    last_failure_at=HOUR_AGO)
    report = status(long_ago, busy_view(gone))
    assert report["delivery"] == {"state": "not_running", "configuration_id": "cfg-1", "last_report_at": HOUR_AGO}
    live = delivery("h:deliver-injixo:2", "ok")  # a restarted sink under another name: the old record is stale
    report = status(long_ago, busy_view(gone, live))
    assert report["delivery"]["state"] == "ok" and report["delivery"]["instances"] == 1
    assert report["status"] == "operational"


def test_delivery_merges_the_instances_each_holding_some_partitions():
    first = delivery("h1:deliver-injixo:1", last_delivered_at="2027-01-15T07:59:00.000Z",
                     last_delivered_contact="c-7", delivered_contacts=5, backlog=3,
                     backlog_oldest_at="2027-01-15T07:58:00.000Z")
    second = delivery("h2:deliver-injixo:1", last_delivered_at="2027-01-15T07:59:30.000Z",
                      last_delivered_contact="c-9", delivered_contacts=2, backlog=4,
                      backlog_oldest_at="2027-01-15T07:59:00.000Z",
                      last_failure_at="2027-01-15T07:50:00.000Z", last_failure_status=503,
                      last_failure_error="HTTP 503 from injixo")
    report = status(integration(injixo=True), busy_view(first, second))
    view = report["delivery"]
    assert report["status"] == "operational" and "delivery_failing" not in report["problems"]
    assert view["state"] == "ok" and view["backlog"] == 7 and view["instances"] == 2
    assert view["backlog_oldest_at"] == "2027-01-15T07:58:00.000Z" and view["backlog_age_seconds"] == 120.0
    assert view["last_delivered_at"] == "2027-01-15T07:59:30.000Z" and view["last_delivered_contact"] == "c-9"
    assert view["last_failure"] == {"status": 503, "error": "HTTP 503 from injixo", "at": "2027-01-15T07:50:00.000Z"}


def test_one_failing_instance_makes_delivery_failing_and_a_stopped_one_outranks_it():
    fine = delivery("h1:deliver-injixo:1", last_delivered_at="2027-01-15T07:59:30.000Z")
    failing = delivery("h2:deliver-injixo:1", "failing", last_failure_at="2027-01-15T07:59:50.000Z",
                       last_failure_status=503, last_failure_error="HTTP 503", backlog=2,
                       backlog_oldest_at="2027-01-15T07:55:00.000Z")
    report = status(integration(injixo=True), busy_view(fine, failing))
    assert report["status"] == "delivery_failing" and report["problems"] == ["delivery_failing"]
    assert report["delivery"]["state"] == "failing" and report["delivery"]["backlog_age_seconds"] == 300.0
    stopped = delivery("h3:deliver-injixo:1", "stopped", last_failure_at="2027-01-15T07:40:00.000Z",
                       last_failure_status=401, last_failure_error="injixo refused the API key")
    report = status(integration(injixo=True), busy_view(fine, failing, stopped))
    assert report["delivery"]["state"] == "stopped"
    assert report["delivery"]["last_failure"]["status"] == 401, "the stopped instance's failure, though older"
    assert report["status"] == "delivery_failing"


def test_delivery_failing_ranks_after_the_api_and_before_silent():
    clock = Clock(NOW - 2000)
    ingress, api = IngressActivity("i", clock), ApiHealth("w", clock)
    ingress.accepted("acme")
    api.report("acme", {"ok": False, "error": "HTTP 503", "http_status": 503})
    view = view_of(ingress, api)
    view.apply(*delivery("d", "failing", last_failure_at=HOUR_AGO, last_failure_status=None,
                         last_failure_error="connection refused"))
    report = status(integration(injixo=True), view)
    assert report["problems"] == ["freshchat_api_failing", "delivery_failing", "silent"]
    assert report["delivery"]["last_failure"]["status"] is None
    assert STATUSES.index("freshchat_api_failing") + 1 == STATUSES.index("delivery_failing") == \
        STATUSES.index("silent") - 1


@pytest.mark.parametrize("name", STATUSES)
def test_every_status_is_documented(name):
    from pathlib import Path
    page = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    assert f"| `{name}` |" in page  # a row of the status table in "Integration health"
