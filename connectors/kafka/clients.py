"""Kafka clients configured from settings: one place that knows bootstrap, TLS and SASL."""

from __future__ import annotations

import ssl

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.settings import Settings, SettingsError

__all__ = ["client_options", "faust_credentials", "make_producer", "make_consumer"]

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def client_options(settings: Settings) -> dict:
    """Connection options shared by every aiokafka client: bootstrap, TLS and SASL."""
    protocol, mechanism = _security(settings)
    opts = {"bootstrap_servers": settings.bootstrap, "security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        opts["ssl_context"] = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    if protocol.startswith("SASL"):
        opts.update(sasl_mechanism=mechanism, sasl_plain_username=settings.kafka_sasl_username,
                    sasl_plain_password=settings.kafka_sasl_password)
    return opts


def faust_credentials(settings: Settings):
    """The same TLS and SASL settings in the form Faust's broker_credentials takes (None: plaintext)."""
    import faust

    protocol, mechanism = _security(settings)
    context = (ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
               if protocol in ("SSL", "SASL_SSL") else None)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(username=settings.kafka_sasl_username, password=settings.kafka_sasl_password,
                                     ssl_context=context, mechanism=mechanism)
    return None


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
