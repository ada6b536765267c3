"""The one settings object: every FRESHSTREAM_* variable is read here and nowhere else."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from streams.errors import SettingsError

__all__ = ["Settings", "ENV_PREFIX", "data_dir_error", "open_log"]

ENV_PREFIX = "FRESHSTREAM_"


@dataclass(frozen=True)
class Settings:
    """Configuration shared by every freshstream process.

    Each field maps to ``FRESHSTREAM_<FIELD NAME IN UPPER CASE>``; the configuration
    table of docs/configuration.md is checked against the same names.
    """

    kafka_bootstrap: str = ""  # empty = the embedded broker
    data_dir: Path = Path(".freshstream")
    broker_port: int = 9092
    ingress_host: str = "127.0.0.1"
    ingress_port: int = 8080
    topic_partitions: int = 6
    raw_topic: str = "freshchat.events.raw"
    dlq_topic: str = "freshchat.events.dlq"
    contacts_topic: str = "freshchat.contacts"
    groups_topic: str = "freshchat.groups"
    integrations_topic: str = "freshstream.integrations"
    health_topic: str = "freshstream.health"  # integration health, compacted (integrations status reads it)
    intervals_topic: str = "freshchat.intervals"  # interval statistics, compacted (docs/intervals.md)
    intervals_enabled: bool = True  # the worker maintains interval statistics
    interval_minutes: int = 15  # 15, 30 or 60; UTC intervals aligned to the hour
    interval_attribution: str = "started"  # a contact counts in the interval its cycle started, or "resolved"
    sla_seconds: float = 60.0  # service level: share of handled contacts answered within this
    interval_retention_days: float = 35.0  # intervals older than this (behind the newest) are no longer restated
    delivery_app_id: str = "freshstream-deliver"  # consumer groups of the sinks: <this>-injixo, <this>-csv
    delivery_state_topic: str = "freshstream.delivery"  # what the injixo sink delivered, compacted (docs/delivery.md)
    delivery_batch_size: int = 500  # contact rows per injixo request at most
    delivery_linger_seconds: float = 1.0  # a batch waits this long for more rows before it is posted
    delivery_settle_seconds: float = 60.0  # a contact is delivered once it went this long without a revision
    delivery_timeout_seconds: float = 30.0  # one request to the WFM's API must be answered within this
    injixo_url: str = "https://api.injixo.com"  # `deliver injixo --url` overrides it
    raw_retention_ms: int = 7 * 24 * 3600 * 1000
    produce_timeout: float = 10.0
    ingress_body_timeout_seconds: float = 10.0  # a request body must arrive whole within this
    ingress_idle_timeout_seconds: float = 30.0  # a connection without a request this long is closed
    ingress_max_connections: int = 512  # connections beyond this are closed at once
    max_body_bytes: int = 1024 * 1024
    retry_after_seconds: int = 5
    secret_key: str = field(default="", repr=False)  # Fernet key for API keys at rest
    worker_app_id: str = "freshstream-worker"  # Faust app id: consumer group and changelog prefix
    worker_store: str = "memory://"  # or rocksdb:// (needs rocksdict)
    worker_web_host: str = "127.0.0.1"
    worker_web_port: int = 6066
    worker_batch_size: int = 20000  # raw records the worker writes as one group at most
    worker_commit_seconds: float = 0.5  # a group of raw records is written once it is this old (or the topic ran dry)
    worker_fetch_max_wait_ms: int = 100  # longest wait for raw records per fetch (Faust's own: 1500)
    processing_guarantee: str = "at_least_once"  # exactly_once needs real Kafka
    chat_expiry_seconds: int = 7 * 24 * 3600
    chat_tombstone_days: float = 90.0  # a forgotten chat's cycle number is kept this long (event time)
    event_time_skew_seconds: float = 300.0  # an event time counts for expiry at most received_at + this
    expiry_check_seconds: float = 60.0
    group_wait_seconds: float = 30.0
    group_poll_seconds: float = 300.0
    replay_lookback_seconds: float = 7 * 24 * 3600  # replay reads from --since minus this
    lag_check_seconds: float = 5.0
    broker_wait_seconds: float = 30.0  # how long the worker waits for Kafka; other verbs wait at most 10 s
    stall_seconds: float = 60.0  # lag without progress this long: the worker's /healthz fails
    health_publish_seconds: float = 5.0  # how often ingress and worker write what they saw per integration
    health_silent_seconds: float = 3600.0  # no accepted event this long: the integration is "silent"
    health_reject_window_seconds: float = 600.0  # 401s within this window count towards "rejecting"
    health_reject_threshold: int = 3  # this many 401s in the window: the integration is "rejecting"
    instance_id: str = ""  # names this process in health records; empty = <hostname>:<role>:<port>
    debug_pause_file: str = ""  # testing aid: while this file exists the worker's agent waits
    log_level: str = ""  # empty: INFO for worker, ingress and broker, WARNING for operator commands
    library_log_level: str = "INFO"  # aiokafka/faust/mode/httpx: their DEBUG dumps every request, chat text included
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    kafka_ssl_cafile: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Build settings from FRESHSTREAM_* variables, then apply explicit overrides."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _coerce(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def embedded(self) -> bool:
        """True when no external Kafka is configured and the embedded broker is used."""
        return not self.kafka_bootstrap

    @property
    def bootstrap(self) -> str:
        """The bootstrap address clients connect to."""
        return self.kafka_bootstrap or f"127.0.0.1:{self.broker_port}"

    def replace(self, **changes) -> "Settings":
        """A copy with some fields changed (tests and sub-commands use this)."""
        return dataclasses.replace(self, **changes)


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _boolean(raw: str) -> bool:
    try:
        return _BOOLEANS[raw.strip().lower()]
    except KeyError:
        raise ValueError(raw) from None


def _coerce(f: dataclasses.Field, raw: str):
    kind = {"int": int, "float": float, "Path": Path, "bool": _boolean}.get(str(f.type))
    if kind is None:
        return raw
    try:
        return kind(raw)
    except ValueError:
        raise SettingsError(
            f"{ENV_PREFIX}{f.name.upper()}={raw!r} is not a valid {f.type}"
        ) from None


def data_dir_error(path: Path, exc: OSError) -> SettingsError:
    """Every file freshstream keeps lives under the data dir, so a file that cannot be
    written or read there is fixed by pointing FRESHSTREAM_DATA_DIR elsewhere."""
    return SettingsError(f"cannot use {path} ({exc.strerror or exc}): set {ENV_PREFIX}DATA_DIR "
                         "to a directory this user can write")


def open_log(path: Path):
    """A child process's log under the data dir, for appending: the first file a run writes
    there, so an unusable data dir is reported here, by name, rather than as a bare OSError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "ab")
    except OSError as exc:
        raise data_dir_error(path, exc) from None
