"""Integration records: names, domains, keys as hashes, API keys encrypted."""

from __future__ import annotations

import pytest

from connectors.integrations.records import (Integration, decrypt_api_key, hash_key, load_cipher,
                                     new_ingress_key, new_integration, normalise_domain)
from streams.errors import IntegrationError
from streams.settings import Settings


@pytest.mark.parametrize("name", ["acme", "acme-eu", "0", "a" * 63])
def test_valid_names(name):
    assert new_integration(name, "acme.freshchat.com", "k").id == name


@pytest.mark.parametrize("name", ["", "-acme", "Acme", "acme_eu", "a" * 64, "acme eu"])
def test_invalid_names(name):
    with pytest.raises(IntegrationError, match="must be 1-63 characters"):
        new_integration(name, "acme.freshchat.com", "k")


@pytest.mark.parametrize("domain, url", [
    ("acme.freshchat.com", "https://acme.freshchat.com"),
    ("https://acme.freshchat.com/", "https://acme.freshchat.com"),
    ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
])
def test_domains(domain, url):
    assert normalise_domain(domain) == url


@pytest.mark.parametrize("domain", ["ftp://acme", "acme.freshchat.com/v2?x", "", "http://"])
def test_bad_domains(domain):
    with pytest.raises(IntegrationError, match="not a Freshchat domain"):
        normalise_domain(domain)


def test_key_is_stored_only_as_its_hash():
    key = new_ingress_key()
    record = new_integration("acme", "acme.freshchat.com", key)
    assert key not in record.to_json().decode()
    assert record.key_hash == hash_key(key)
    assert record.key_matches(key) and not record.key_matches(key + "x")
    assert Integration.from_json(record.to_json()) == record


def test_rotation_replaces_the_key():
    old, new = new_ingress_key(), new_ingress_key()
    rotated = new_integration("acme", "acme.freshchat.com", old).with_key(new)
    assert rotated.key_matches(new) and not rotated.key_matches(old)


def test_api_key_round_trips_encrypted_and_is_never_shown(tmp_path):
    cipher = load_cipher(Settings(data_dir=tmp_path))
    record = new_integration("acme", "acme.freshchat.com", "k", api_key_enc=cipher.encrypt(b"secret-api").decode())
    assert b"secret-api" not in record.to_json()
    assert "secret-api" not in str(record.public_view()) and record.public_view()["freshchat_api_key"] == "set"
    assert decrypt_api_key(load_cipher(Settings(data_dir=tmp_path)), record) == "secret-api"
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600


def test_wrong_secret_key_is_a_clear_error(tmp_path):
    record = new_integration("acme", "acme.freshchat.com", "k",
                             api_key_enc=load_cipher(Settings(data_dir=tmp_path)).encrypt(b"x").decode())
    other = load_cipher(Settings(data_dir=tmp_path / "other"))
    with pytest.raises(IntegrationError, match="cannot be decrypted"):
        decrypt_api_key(other, record)
    with pytest.raises(IntegrationError, match="not a Fernet key"):
        load_cipher(Settings(secret_key="short"))


def test_keys_are_compared_in_constant_time(monkeypatch):
    """Through hmac.compare_digest, on hashes of equal length: timing says nothing about the key."""
    import hmac

    import connectors.integrations.records as integrations

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(integrations.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    key = integrations.new_ingress_key()
    record = integrations.new_integration("acme", "acme.freshchat.com", key)
    assert record.key_matches(key) and not record.key_matches(key[:-1] + "x") and not record.key_matches("")
    assert len(calls) == 3 and all(len(a) == len(b) for a, b in calls)
    assert key not in record.to_json().decode()
