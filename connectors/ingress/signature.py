"""Freshchat webhook signatures: RSA PKCS#1 v1.5 SHA-256 over the raw body bytes."""

from __future__ import annotations

import base64
import binascii
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = ["PublicKeyError", "load_public_key", "verify_signature"]

_LABEL = re.compile(rb"-----(BEGIN|END) [A-Z ]*-----")


class PublicKeyError(ValueError):
    """The text given as a webhook public key holds no RSA public key."""


def load_public_key(text: str | bytes) -> rsa.RSAPublicKey:
    """Parse a key however an admin pasted it: any label, one line or wrapped, SPKI or PKCS#1.

    Freshchat shows an SPKI key under an ``RSA PUBLIC KEY`` label, so the label
    is ignored and the DER is tried as SPKI first, then as PKCS#1.
    """
    raw = text.encode() if isinstance(text, str) else text
    body = b"".join(_LABEL.sub(b"", raw).split())
    try:
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise PublicKeyError("the webhook public key is not base64 between PEM labels") from None
    for loader in (serialization.load_der_public_key, _load_pkcs1):
        try:
            key = loader(der)
        except (ValueError, TypeError):
            continue
        if isinstance(key, rsa.RSAPublicKey):
            return key
    raise PublicKeyError("the webhook public key is neither an SPKI nor a PKCS#1 RSA public key")


def _load_pkcs1(der: bytes):
    pem = b"-----BEGIN RSA PUBLIC KEY-----\n" + base64.encodebytes(der) + b"-----END RSA PUBLIC KEY-----\n"
    return serialization.load_pem_public_key(pem)


def verify_signature(key: rsa.RSAPublicKey, body: bytes, signature_b64: str) -> bool:
    """True when the base64 signature matches the exact body bytes."""
    try:
        signature = base64.b64decode(signature_b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True
