"""Who may post to an integration's URL: its ingress key, or Freshchat's RSA signature."""

from __future__ import annotations

from functools import lru_cache

from connectors.ingress.signature import PublicKeyError, load_public_key, verify_signature
from connectors.integrations.records import Integration

__all__ = ["bearer_token", "bearer_ok", "signature_ok"]


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def bearer_ok(integration: Integration | None, token: str | None) -> bool:
    """True when the token is this (enabled) integration's ingress key."""
    if integration is None or integration.disabled or token is None:
        return False
    return integration.key_matches(token)


def signature_ok(integration: Integration | None, body: bytes, signature: str | None) -> bool:
    """True when the body carries a valid Freshchat signature for this integration."""
    if integration is None or integration.disabled or not signature or not integration.webhook_public_key:
        return False
    try:
        key = _public_key(integration.webhook_public_key)
    except PublicKeyError:
        return False
    return verify_signature(key, body, signature)


@lru_cache(maxsize=256)
def _public_key(pem: str):
    return load_public_key(pem)
