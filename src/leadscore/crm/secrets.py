"""CRM secrets at rest: Fernet tokens under LEADSCORE_SECRET_KEY, never returned by the API."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from leadscore.core.config import DEMO_JWT_SECRET, ServiceSettings, StoreSettings
from leadscore.core.errors import ConfigurationError, LeadScoreError


class SecretKeyMissingError(LeadScoreError):
    """A CRM credential cannot be stored or read without the server's secret key."""

    status_code = 503
    code = "secret_key_missing"


class SecretUnreadableError(LeadScoreError):
    """A stored secret was encrypted under a key that is no longer configured."""

    status_code = 503
    code = "secret_unreadable"


def new_key() -> str:
    """A fresh key for LEADSCORE_SECRET_KEY."""
    return Fernet.generate_key().decode()


def parse_keys(text: str) -> MultiFernet:
    """Comma-separated Fernet keys (the first encrypts); a malformed one raises ValueError."""
    keys = [part.strip() for part in text.split(",") if part.strip()]
    if not keys:
        raise ValueError("LEADSCORE_SECRET_KEY holds no key")
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError) as exc:
        raise ValueError(
            "LEADSCORE_SECRET_KEY must be Fernet keys (32 url-safe base64 bytes each; "
            "`leadscore crm keygen` prints one)"
        ) from exc


class SecretBox:
    """Encrypts and decrypts one JSON object; without a key, says so clearly."""

    def __init__(self, keys: MultiFernet | None) -> None:
        self._keys = keys

    def _require(self) -> MultiFernet:
        if self._keys is None:
            raise SecretKeyMissingError(
                "LEADSCORE_SECRET_KEY is not set: CRM credentials cannot be stored or used "
                "(`leadscore crm keygen` prints a key)"
            )
        return self._keys

    def seal(self, value: dict[str, Any]) -> bytes:
        """The encrypted form of `value`."""
        return self._require().encrypt(orjson.dumps(value))

    def open(self, token: bytes) -> dict[str, Any]:
        """The value sealed in `token`."""
        try:
            value: dict[str, Any] = orjson.loads(self._require().decrypt(token))
        except InvalidToken as exc:
            raise SecretUnreadableError(
                "a stored CRM secret does not open with LEADSCORE_SECRET_KEY: it was sealed "
                "with a key no longer configured (keep the old key after the new one)"
            ) from exc
        return value


def box_for(settings: StoreSettings) -> SecretBox:
    """The configured key; the demo server, without one, uses a key of its own public secret."""
    if settings.secret_key is not None:
        try:
            return SecretBox(parse_keys(settings.secret_key.get_secret_value()))
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
    if isinstance(settings, ServiceSettings) and settings.demo:
        digest = hashlib.sha256(f"{DEMO_JWT_SECRET}:crm".encode()).digest()
        return SecretBox(MultiFernet([Fernet(base64.urlsafe_b64encode(digest))]))
    return SecretBox(None)
