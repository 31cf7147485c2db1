"""Settings refuse what would be unsafe: guessable JWT secrets, cache windows past 30 s."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from pydantic import ValidationError

from leadscore.core.config import (
    DEMO_JWT_SECRET,
    ServiceSettings,
    StoreSettings,
    is_loopback,
    secret_problem,
)


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        (None, "is not set"),
        ("short-but-random-Q7x", "shorter than 32"),
        (DEMO_JWT_SECRET, "public demo secret"),
        ("a" * 40, "guessable (1 distinct"),
        ("ab" * 20, "guessable (2 distinct"),
        ("abc123" * 8, "guessable (6 distinct"),
        ("password" * 5, "guessable"),
        ("a" * 30 + "bcdefghijk", "guessable"),  # 11 distinct but 1.9 bits per character
    ],
)
def test_unsafe_secrets_are_refused_with_the_reason(secret: str | None, why: str) -> None:
    problem = secret_problem(secret)
    assert problem is not None
    assert why in problem
    with pytest.raises(ValidationError, match="LEADSCORE_JWT_SECRET") as refused:
        ServiceSettings(jwt_secret=secret)  # type: ignore[arg-type]
    assert why in str(refused.value)


@pytest.mark.parametrize(
    "secret", [secrets.token_urlsafe(48), secrets.token_hex(32), secrets.token_hex(16)]
)
def test_random_secrets_are_accepted(secret: str) -> None:
    assert secret_problem(secret) is None
    assert ServiceSettings(jwt_secret=secret).secret == secret  # type: ignore[arg-type]


def test_database_commands_need_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEADSCORE_JWT_SECRET", raising=False)
    monkeypatch.setenv("LEADSCORE_DATABASE_URL", "sqlite+aiosqlite:///elsewhere.db")
    assert StoreSettings().resolved_database_url == "sqlite+aiosqlite:///elsewhere.db"
    with pytest.raises(ValidationError):
        ServiceSettings()


@pytest.mark.parametrize(
    ("field", "value"), [("key_cache_seconds", 31), ("key_cache_seconds", 0),
                         ("ws_recheck_seconds", 11), ("ws_recheck_seconds", 0)]
)  # fmt: skip
def test_revocations_cannot_be_delayed_past_their_bound(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        ServiceSettings(demo=True, **{field: value})


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("example.com", False)],
)  # fmt: skip
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("url", "ca_file", "why"),
    [
        ("http://127.0.0.1:6379/0", None, "redis:// or rediss://"),
        ("redis://127.0.0.1:6379/zero", None, "redis://host:port/db"),
        ("redis://127.0.0.1:6379/0", "ca.pem", "never uses TLS"),
        ("rediss://127.0.0.1:6379/0", "missing.pem", "cannot read the Redis CA file"),
        (None, "ca.pem", "without a Redis URL"),
    ],
)
def test_unusable_redis_settings_are_refused_when_read(
    url: str | None, ca_file: str | None, why: str, tmp_path: Path
) -> None:
    (tmp_path / "ca.pem").write_text("unused")
    with pytest.raises(ValidationError, match=why):
        ServiceSettings(
            demo=True, redis_url=url, redis_ca_file=tmp_path / ca_file if ca_file else None
        )


def test_a_rediss_url_is_accepted_with_the_system_cas() -> None:
    settings = ServiceSettings(demo=True, redis_url="rediss://cache.internal:6380/1")
    address = settings.redis_address
    assert address is not None
    assert (address.tls, address.port, address.db) == (True, 6380, 1)
    assert address.ssl_context is not None
    assert ServiceSettings(demo=True).redis_address is None
