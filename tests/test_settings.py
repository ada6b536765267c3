"""One settings object, read from FRESHSTREAM_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import SettingsError
from streams.settings import Settings


def test_defaults_use_the_embedded_broker():
    settings = Settings.from_env({})
    assert settings.embedded and settings.bootstrap == "127.0.0.1:9092"
    assert settings.data_dir == Path(".freshstream") and settings.produce_timeout == 10.0


def test_environment_is_typed():
    settings = Settings.from_env({"FRESHSTREAM_KAFKA_BOOTSTRAP": "k1:9092,k2:9092",
                                  "FRESHSTREAM_PRODUCE_TIMEOUT": "2.5", "FRESHSTREAM_DATA_DIR": "/var/fs",
                                  "FRESHSTREAM_TOPIC_PARTITIONS": "12"})
    assert not settings.embedded and settings.bootstrap == "k1:9092,k2:9092"
    assert (settings.produce_timeout, settings.data_dir, settings.topic_partitions) == (2.5, Path("/var/fs"), 12)


def test_bad_number_names_the_variable():
    with pytest.raises(SettingsError, match="FRESHSTREAM_INGRESS_PORT='eighty'"):
        Settings.from_env({"FRESHSTREAM_INGRESS_PORT": "eighty"})


def test_secrets_are_not_in_repr():
    settings = Settings(secret_key="s3cr3t-value", kafka_sasl_password="pw-value")
    assert "s3cr3t-value" not in repr(settings) and "pw-value" not in repr(settings)


def test_the_configuration_page_documents_every_setting():
    page = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    table = [line for line in page.splitlines() if line.startswith("| `FRESHSTREAM_")]
    missing = [f"FRESHSTREAM_{name.upper()}" for name in Settings.__dataclass_fields__
               if not any(line.startswith(f"| `FRESHSTREAM_{name.upper()}` |") for line in table)]
    assert not missing, f"the table of docs/configuration.md lacks {missing}"
