"""Kafka clients configured from settings: one place that knows bootstrap, TLS and SASL."""

from __future__ import annotations

import logging
import ssl
from contextlib import contextmanager

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.conn import collect_hosts
from aiokafka.errors import KafkaConnectionError, KafkaError, NoBrokersAvailable

from streams.errors import BrokerError, SettingsError
from streams.settings import Settings

__all__ = ["client_options", "faust_credentials", "make_producer", "make_consumer", "bootstrap_hosts",
           "broker_errors"]

def _quiet_assignments(record: logging.LogRecord) -> bool:
    """Drop aiokafka's INFO "Updating subscribed topics to: …", logged on every assign(): every
    one-shot verb would print it above its answer. Kept when the library logs at DEBUG."""
    return (record.levelno > logging.INFO or logging.getLogger("aiokafka").getEffectiveLevel() <= logging.DEBUG
            or not str(record.msg).startswith("Updating subscribed topics"))


logging.getLogger("aiokafka.consumer.subscription_state").addFilter(_quiet_assignments)

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def client_options(settings: Settings) -> dict:
    """Connection options shared by every aiokafka client: bootstrap, TLS and SASL."""
    protocol, mechanism = _security(settings)
    bootstrap_hosts(settings)  # aiokafka would fail on a malformed address with a bare ValueError
    opts = {"bootstrap_servers": settings.bootstrap, "security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        opts["ssl_context"] = _ssl_context(settings)
    if protocol.startswith("SASL"):
        opts.update(sasl_mechanism=mechanism, sasl_plain_username=settings.kafka_sasl_username,
                    sasl_plain_password=settings.kafka_sasl_password)
    return opts


def faust_credentials(settings: Settings):
    """The same TLS and SASL settings in the form Faust's broker_credentials takes (None: plaintext)."""
    import faust

    protocol, mechanism = _security(settings)
    context = _ssl_context(settings) if protocol in ("SSL", "SASL_SSL") else None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(username=settings.kafka_sasl_username, password=settings.kafka_sasl_password,
                                     ssl_context=context, mechanism=mechanism)
    return None


def bootstrap_hosts(settings: Settings) -> list[tuple[str, int]]:
    """(host, port) of every bootstrap address, parsed as aiokafka parses them, so that a
    malformed one is reported naming the variable before any client is made."""
    try:
        hosts = [(host, port) for host, port, _ in collect_hosts(settings.bootstrap, randomize=False)]
    except ValueError:
        hosts = []
    if not hosts or any(not host or not 0 < port < 65536 for host, port in hosts):
        raise SettingsError(f"FRESHSTREAM_KAFKA_BOOTSTRAP={settings.bootstrap!r}: use host:port[,host:port…], "
                            "e.g. kafka-1:9092,kafka-2:9092")
    return hosts


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    except OSError as exc:  # a missing file, or ssl.SSLError for one that holds no certificate
        raise SettingsError(f"FRESHSTREAM_KAFKA_SSL_CAFILE={settings.kafka_ssl_cafile!r}: cannot load CA "
                            f"certificates from it ({exc.strerror or exc})") from None


@contextmanager
def broker_errors(settings: Settings):
    """Turn what aiokafka raises when Kafka goes away or refuses a request into a BrokerError.

    Only a command's own boundary uses this: long-running services retry instead, and a
    one-shot command has nothing better to do than say which broker failed and how.
    """
    try:
        yield
    except (KafkaConnectionError, NoBrokersAvailable, ConnectionError) as exc:
        raise BrokerError(f"lost the connection to Kafka at {settings.bootstrap} ({exc}): check that the "
                          "broker is running and that FRESHSTREAM_KAFKA_BOOTSTRAP points at it") from exc
    except KafkaError as exc:
        raise BrokerError(f"Kafka at {settings.bootstrap} failed the request ({exc}): check the broker's log "
                          "and the FRESHSTREAM_KAFKA_* settings") from exc
    except TimeoutError as exc:
        raise BrokerError(f"Kafka at {settings.bootstrap} did not answer in time"
                          f"{f' ({exc})' if str(exc) else ''}: check that the broker is running and not "
                          "overloaded") from exc


def _security(settings: Settings) -> tuple[str, str]:
    protocol = settings.kafka_security_protocol.upper()
    mechanism = (settings.kafka_sasl_mechanism or "PLAIN").upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise SettingsError(f"FRESHSTREAM_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol!r}: "
                            f"use one of {', '.join(SECURITY_PROTOCOLS)}")
    if protocol.startswith("SASL") and mechanism not in SASL_MECHANISMS:
        raise SettingsError(f"FRESHSTREAM_KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism!r}: "
                            f"use one of {', '.join(SASL_MECHANISMS)}")
    return protocol, mechanism


def make_producer(settings: Settings, **overrides) -> AIOKafkaProducer:
    """A producer that waits for every in-sync replica (acks=all)."""
    opts = client_options(settings)
    opts.update(acks="all", linger_ms=1, max_request_size=settings.max_body_bytes + 65536,
                request_timeout_ms=int(settings.produce_timeout * 1000),
                retry_backoff_ms=200)
    opts.update(overrides)
    return AIOKafkaProducer(**opts)


def make_consumer(settings: Settings, **overrides) -> AIOKafkaConsumer:
    """A consumer with freshstream's defaults; callers assign or subscribe."""
    opts = client_options(settings)
    opts.update(enable_auto_commit=False, auto_offset_reset="earliest")
    opts.update(overrides)
    return AIOKafkaConsumer(**opts)
