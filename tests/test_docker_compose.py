"""docker-compose.yml cannot run here (no Docker engine), so its structure is checked instead."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_kafka_is_one_kraft_broker_reachable_inside_and_outside():
    kafka = compose()["services"]["kafka"]
    env = kafka["environment"]
    assert kafka["image"].startswith("apache/kafka:")
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert "INTERNAL://kafka:19092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "9092:9092" in kafka["ports"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # freshstream creates topics with their configs


def test_ingress_uses_that_kafka_and_a_secret_from_the_environment():
    services = compose()["services"]
    ingress = services["ingress"]
    env = ingress["environment"]
    internal = [u.split("//")[1] for u in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"].split(",")
                if u.startswith("INTERNAL")]
    assert env["FRESHSTREAM_KAFKA_BOOTSTRAP"] in internal
    assert env["FRESHSTREAM_SECRET_KEY"].startswith("${FRESHSTREAM_SECRET_KEY:?")
    assert ingress["command"][0] == "ingress" and "8080:8080" in ingress["ports"]
    assert ingress["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert (ROOT / ingress["build"] / "Dockerfile").exists()


def test_every_environment_name_is_a_setting():
    from streams.settings import ENV_PREFIX, Settings
    known = {ENV_PREFIX + name.upper() for name in Settings.__dataclass_fields__}
    for name, service in compose()["services"].items():
        for variable in service.get("environment", {}):
            if variable.startswith(ENV_PREFIX):
                assert variable in known, f"{name}: {variable} is not a freshstream setting"


def test_worker_runs_exactly_once_on_real_kafka():
    worker = compose()["services"]["worker"]
    assert worker["command"][0] == "worker"
    assert worker["environment"]["FRESHSTREAM_PROCESSING_GUARANTEE"] == "exactly_once"
    assert worker["environment"]["FRESHSTREAM_KAFKA_BOOTSTRAP"] == compose()["services"]["ingress"]["environment"][
        "FRESHSTREAM_KAFKA_BOOTSTRAP"]
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_prometheus_scrapes_both_services_and_grafana_is_provisioned():
    services = compose()["services"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in services["prometheus"]["volumes"]
    config = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    ingress_port = services["ingress"]["ports"][0].split(":")[1]
    worker_port = services["worker"]["command"][services["worker"]["command"].index("--web-port") + 1]
    assert targets == {f"ingress:{ingress_port}", f"worker:{worker_port}"}
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/freshstream.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for series in ("freshstream_ingress_requests_total", "freshstream_ingress_auth_failures_total",
                   "freshstream_worker_events_total", "freshstream_worker_lag_records",
                   "freshstream_worker_lag_seconds", "freshstream_worker_emission_delay_seconds_bucket",
                   "freshstream_worker_open_chats", "freshstream_worker_recovery_remaining",
                   "freshstream_integration_status", "freshstream_ingress_last_accepted_timestamp_seconds",
                   "freshstream_worker_revisions_total", "freshstream_worker_retractions_total",
                   "freshstream_interval_offered", "freshstream_interval_handled", "freshstream_interval_aht_seconds",
                   "freshstream_interval_service_level", "freshstream_delivery_backlog_contacts",
                   "freshstream_delivery_backlog_age_seconds",
                   "freshstream_delivery_last_delivered_timestamp_seconds"):
        assert series in exprs, f"the dashboard has no panel for {series}"
    source = " ".join(path.read_text() for folder in ("connectors", "streams") for path in (ROOT / folder).rglob("*.py"))
    for series in set(re.findall(r"freshstream_[a-z_]+", exprs)):
        base = re.sub(r"_(bucket|sum|count)$", "", series)
        assert f'"{base}"' in source, f"the dashboard queries {series}, which no process exports"
