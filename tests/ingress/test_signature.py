"""Webhook public keys however admins paste them, and signatures over exact bytes."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

from connectors.ingress.signature import PublicKeyError, load_public_key, verify_signature
from tests.kafka_records import public_pem, sign


def pkcs1_pem(private_key) -> str:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1).decode()


@pytest.mark.parametrize("variant", ["spki", "pkcs1", "spki as RSA label on one line", "no labels"])
def test_every_pasted_form_verifies(rsa_key, variant):
    spki = public_pem(rsa_key)
    text = {
        "spki": spki,
        "pkcs1": pkcs1_pem(rsa_key),
        "spki as RSA label on one line": spki.replace("PUBLIC KEY", "RSA PUBLIC KEY").replace("\n", " "),
        "no labels": "".join(spki.splitlines()[1:-1]),
    }[variant]
    body = b'{"action": "message_create"}'
    key = load_public_key(text)
    assert verify_signature(key, body, sign(rsa_key, body))
    assert not verify_signature(key, body + b"\n", sign(rsa_key, body))


def test_garbage_signature_is_false_not_an_error(rsa_key):
    key = load_public_key(public_pem(rsa_key))
    assert not verify_signature(key, b"{}", "%%% not base64")
    assert not verify_signature(key, b"{}", "c2hvcnQ=")


@pytest.mark.parametrize("text", ["", "-----BEGIN PUBLIC KEY----- !!! -----END PUBLIC KEY-----", "aGVsbG8="])
def test_non_keys_are_refused_clearly(text):
    with pytest.raises(PublicKeyError):
        load_public_key(text)
