"""Kafka TLS and SASL settings: the client configuration they produce, for aiokafka and for Faust."""

from __future__ import annotations

import ssl

import pytest

from connectors.kafka.clients import client_options, faust_credentials
from streams.errors import SettingsError
from streams.settings import Settings

PASSWORD = "sasl-pw-4f7a9c"


def test_plaintext_is_the_default_and_carries_no_credentials():
    opts = client_options(Settings(kafka_bootstrap="k:9092"))
    assert opts == {"bootstrap_servers": "k:9092", "security_protocol": "PLAINTEXT"}
    assert faust_credentials(Settings()) is None


@pytest.mark.parametrize("cafile", [None, "system"])
def test_tls_verifies_certificates_and_host_names(cafile):
    opts = client_options(Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=ssl.get_default_verify_paths().cafile
                                   if cafile == "system" and ssl.get_default_verify_paths().cafile else ""))
    context = opts["ssl_context"]
    assert opts["security_protocol"] == "SSL" and "sasl_mechanism" not in opts
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    credentials = faust_credentials(Settings(kafka_security_protocol="SSL"))
    assert credentials.protocol.value == "SSL" and credentials.context.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize("protocol,mechanism", [("SASL_PLAINTEXT", "PLAIN"), ("SASL_SSL", "PLAIN"),
                                                ("SASL_SSL", "SCRAM-SHA-256"), ("SASL_SSL", "SCRAM-SHA-512"),
                                                ("sasl_ssl", "scram-sha-512")])
def test_sasl_plain_and_scram(protocol, mechanism):
    settings = Settings(kafka_security_protocol=protocol, kafka_sasl_mechanism=mechanism,
                        kafka_sasl_username="freshstream", kafka_sasl_password=PASSWORD)
    opts = client_options(settings)
    assert opts["security_protocol"] == protocol.upper()
    assert opts["sasl_mechanism"] == mechanism.upper()
    assert opts["sasl_plain_username"] == "freshstream" and opts["sasl_plain_password"] == PASSWORD
    assert ("ssl_context" in opts) == protocol.upper().endswith("SSL")
    credentials = faust_credentials(settings)
    assert credentials.protocol.value == protocol.upper() and credentials.mechanism.value == mechanism.upper()
    assert credentials.username == "freshstream" and credentials.password == PASSWORD
    assert PASSWORD not in repr(settings), "the password must not reach logs through the settings' repr"


def test_sasl_defaults_to_plain():
    assert client_options(Settings(kafka_security_protocol="SASL_PLAINTEXT"))["sasl_mechanism"] == "PLAIN"


@pytest.mark.parametrize("changes,named", [({"kafka_security_protocol": "TLS"}, "SECURITY_PROTOCOL"),
                                           ({"kafka_security_protocol": "SASL_SSL",
                                             "kafka_sasl_mechanism": "GSSAPI"}, "SASL_MECHANISM")])
def test_unknown_values_are_refused_with_the_variable_named(changes, named):
    with pytest.raises(SettingsError, match=named):
        client_options(Settings(**changes))
