"""Integrations (docs/operations.md, Integrations): the record, its ingress key, and its secrets at rest."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import orjson
from cryptography.fernet import Fernet, InvalidToken

from streams.domain.times import format_time
from streams.errors import IntegrationError
from streams.settings import Settings, data_dir_error

__all__ = ["Integration", "NAME_PATTERN", "new_ingress_key", "hash_key",
           "new_integration", "load_cipher", "normalise_domain"]

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?")


@dataclass(frozen=True)
class Integration:
    """One Freshchat account feeding freshstream; the ingress key is kept only as a hash."""

    id: str
    domain: str
    key_hash: str
    api_key_enc: str | None = None
    webhook_public_key: str | None = None
    disabled: bool = False
    injixo_configuration_id: str | None = None  # where `deliver injixo` posts this integration's contacts
    injixo_api_key_enc: str | None = None  # the injixo API key, encrypted like the Freshchat one
    created_at: str = ""
    updated_at: str = ""

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> "Integration":
        doc = orjson.loads(data)
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})

    def public_view(self) -> dict:
        """What `integrations show` prints: no key hash, no API key, not even encrypted."""
        return {"id": self.id, "domain": self.domain, "disabled": self.disabled,
                "freshchat_api_key": "set" if self.api_key_enc else "not set",
                "webhook_public_key": "set" if self.webhook_public_key else "not set",
                "injixo_delivery": "configured" if self.delivers_to_injixo else "not configured",
                "injixo_configuration_id": self.injixo_configuration_id,
                "created_at": self.created_at, "updated_at": self.updated_at}

    def key_matches(self, presented: str) -> bool:
        """Constant-time comparison of the presented key's hash with the stored one."""
        return hmac.compare_digest(hash_key(presented), self.key_hash)

    def with_key(self, key: str) -> "Integration":
        return replace(self, key_hash=hash_key(key), updated_at=_now())

    def disable(self) -> "Integration":
        return replace(self, disabled=True, updated_at=_now())

    def enable(self) -> "Integration":
        return replace(self, disabled=False, updated_at=_now())

    @property
    def delivers_to_injixo(self) -> bool:
        return bool(self.injixo_configuration_id and self.injixo_api_key_enc)

    def with_injixo(self, configuration_id: str | None, api_key_enc: str | None) -> "Integration":
        """Both None: delivery to injixo stops for this integration."""
        return replace(self, injixo_configuration_id=configuration_id, injixo_api_key_enc=api_key_enc,
                       updated_at=_now())


def new_ingress_key() -> str:
    """A fresh ingress key: 256 random bits, recognisable by its prefix."""
    return "fsk_" + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """Keys are random, not passwords, so one SHA-256 is enough to store them safely."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def normalise_domain(domain: str) -> str:
    """`acme.freshchat.com` → `https://acme.freshchat.com`; a full http(s) URL is kept."""
    domain = domain.strip().rstrip("/")
    scheme, sep, host = domain.partition("://")
    if not sep:
        scheme, host = "https", domain
    if scheme not in ("http", "https") or not _HOST.fullmatch(host):
        raise IntegrationError(
            f"--domain {domain!r} is not a Freshchat domain such as acme.freshchat.com "
            "or a URL such as http://127.0.0.1:9000")
    return f"{scheme}://{host}"


def new_integration(name: str, domain: str, key: str, *, api_key_enc: str | None = None,
                    webhook_public_key: str | None = None) -> Integration:
    """Validate and build a new integration record."""
    if not NAME_PATTERN.fullmatch(name):
        raise IntegrationError(
            f"integration name {name!r} must be 1-63 characters of a-z, 0-9 and '-', "
            "starting with a letter or digit")
    now = _now()
    return Integration(id=name, domain=normalise_domain(domain), key_hash=hash_key(key),
                       api_key_enc=api_key_enc, webhook_public_key=webhook_public_key,
                       created_at=now, updated_at=now)


def load_cipher(settings: Settings) -> Fernet:
    """The key that encrypts Freshchat API keys: from settings, else generated once (0600)."""
    if settings.secret_key:
        try:
            return Fernet(settings.secret_key.encode())
        except ValueError:
            raise IntegrationError("FRESHSTREAM_SECRET_KEY is not a Fernet key "
                                   "(32 url-safe base64-encoded bytes)") from None
    path = Path(settings.data_dir) / "secret.key"
    try:
        if not path.exists():
            _create_key_file(path)
        key = path.read_bytes().strip()
    except OSError as exc:
        raise data_dir_error(path, exc) from None
    try:
        return Fernet(key)
    except ValueError:
        raise IntegrationError(f"{path} does not hold a Fernet key: restore it from a backup (the stored "
                               "Freshchat API keys were encrypted with it), or set FRESHSTREAM_SECRET_KEY") from None


def _create_key_file(path: Path) -> None:
    """Written aside, then linked into place: two processes starting at once (two `dev`s) must
    not see each other's empty file, and the first link wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key())
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
    finally:
        aside.unlink(missing_ok=True)


def decrypt_api_key(cipher: Fernet, integration: Integration) -> str | None:
    """The Freshchat API key in clear, for the REST client only."""
    return _decrypt(cipher, integration.api_key_enc, integration.id, "Freshchat")


def decrypt_injixo_key(cipher: Fernet, integration: Integration) -> str | None:
    """The injixo API key in clear, for the injixo sink's Authorization header only."""
    return _decrypt(cipher, integration.injixo_api_key_enc, integration.id, "injixo")


def _decrypt(cipher: Fernet, token: str | None, integration_id: str, whose: str) -> str | None:
    if not token:
        return None
    try:
        return cipher.decrypt(token.encode()).decode()
    except InvalidToken:
        raise IntegrationError(f"integration {integration_id}: the stored {whose} API key cannot be decrypted "
                               "with this FRESHSTREAM_SECRET_KEY") from None


def _now() -> str:
    return format_time(datetime.now(timezone.utc))
