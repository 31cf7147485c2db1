"""Settings: the only place LeadScore reads its environment (`LEADSCORE_*`)."""

from __future__ import annotations

import ipaddress
import json
import math
from collections import Counter
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from leadscore.core.errors import ConfigurationError
from leadscore.core.resp import RedisAddress

DEMO_JWT_SECRET: Final = "leadscore-demo-secret-not-for-production-use"
MIN_SECRET_LENGTH: Final = 32
MIN_SECRET_DISTINCT: Final = 10
MIN_SECRET_BITS_PER_CHAR: Final = 3.0
#: How long a worker trusts what it read about a key or a team (revocations, team settings).
KEY_CACHE_SECONDS: Final = 30.0


def secret_problem(secret: str | None) -> str | None:
    """Why this JWT secret is unsafe (missing, the demo's, short or guessable), None if fine."""
    if secret is None:
        return "is not set"
    if secret == DEMO_JWT_SECRET:
        return "is the public demo secret"
    if len(secret) < MIN_SECRET_LENGTH:
        return f"is shorter than {MIN_SECRET_LENGTH} characters"
    counts = Counter(secret)
    # Shannon entropy of the secret's own characters: "abab…" or "a"*40 are long, not random.
    bits = 0.0 - sum(n / len(secret) * math.log2(n / len(secret)) for n in counts.values())
    if len(counts) < MIN_SECRET_DISTINCT or bits < MIN_SECRET_BITS_PER_CHAR:
        return (
            f"looks guessable ({len(counts)} distinct characters, {bits:.1f} bits per "
            f"character; need at least {MIN_SECRET_DISTINCT} and {MIN_SECRET_BITS_PER_CHAR:.0f})"
        )
    return None


def is_loopback(host: str) -> bool:
    """Whether binding this host keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Engine and CLI configuration; defaults run the embedded demo."""

    model_config = SettingsConfigDict(env_prefix="LEADSCORE_", extra="ignore")

    home: Path = Field(default=Path("var"), description="Where models and the SQLite file live.")
    model_dir: Path | None = Field(
        default=None, description="Serve this artifact, not the default."
    )
    num_threads: int = Field(default=2, ge=1, le=64)
    hot_threshold: float = Field(default=70.0, ge=0, le=100)
    warm_threshold: float = Field(default=40.0, ge=0, le=100)
    escalation_confidence: float = Field(default=0.85, ge=0, le=1)
    commission_rate: float = Field(default=0.06, ge=0, le=1)
    include_protected_features: bool = False


class StoreSettings(Settings):
    """What commands that only touch the database need (`keys`, `teams`, `models`, `db`,
    `crm`): no JWT secret; CRM secrets are sealed with `secret_key`."""

    database_url: str | None = Field(default=None, description="Default: SQLite in `home`.")
    secret_key: SecretStr | None = Field(
        default=None,
        description="Fernet key(s) that encrypt CRM credentials at rest; comma-separated to "
        "rotate (the first encrypts, every one decrypts). `leadscore crm keygen` makes one.",
    )

    @property
    def resolved_database_url(self) -> str:
        """The configured database, or the embedded SQLite file."""
        return self.database_url or f"sqlite+aiosqlite:///{self.home / 'leadscore.db'}"


class ServiceSettings(StoreSettings):
    """The API server's configuration; refuses an unsafe JWT secret outside demo mode."""

    demo: bool = False
    redis_url: str | None = Field(
        default=None, description="redis://, or rediss:// for TLS; every worker shares it."
    )
    redis_ca_file: Path | None = Field(
        default=None,
        description="PEM CA bundle that signed the rediss:// server's certificate (default: "
        "the system's trusted CAs).",
    )
    jwt_secret: SecretStr | None = None
    jwt_algorithm: str = Field(default="HS256", pattern="^HS(256|384|512)$")
    jwt_issuer: str = "leadscore"
    jwt_audience: str = "leadscore-api"
    jwt_ttl_seconds: int = Field(default=900, ge=60, le=86_400)
    key_cache_seconds: float = Field(
        default=KEY_CACHE_SECONDS, gt=0, le=KEY_CACHE_SECONDS,
        description="How long a worker trusts a key lookup: a revoked key works this long.",
    )  # fmt: skip
    rate_limit_per_minute: int = Field(default=1200, ge=1)
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated origins, or a JSON list."
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_upload_bytes: int = Field(
        default=200 * 1_048_576, ge=1024, description="A CRM export uploaded for training."
    )
    max_leads_upload_bytes: int = Field(
        default=20 * 1_048_576, ge=1024, description="A CSV of leads uploaded for scoring."
    )
    max_leads_upload_rows: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Leads in one CSV uploaded for scoring."
    )
    cache_max_entries: int = Field(default=100_000, ge=100)
    health_timeout_seconds: float = Field(default=0.5, gt=0, le=10)
    durable_scores: bool = Field(
        default=False, description="Wait for the score's database commit before answering."
    )
    write_batch_max: int = Field(default=500, ge=1)
    write_interval_ms: float = Field(default=20.0, ge=0)
    global_models_team: str | None = Field(
        default=None,
        description="The team whose admins may change the global model over HTTP.",
    )
    retrain_interval_hours: float | None = Field(
        default=None, gt=0, description="Retrain every team with enough outcomes this often."
    )
    model_poll_seconds: float = Field(
        default=1.0, gt=0, le=60, description="How often each worker checks for a new champion."
    )
    drift_window: int = Field(
        default=5_000, ge=100, le=100_000, description="Recent leads compared for drift."
    )
    drift_threshold: float = Field(
        default=0.25, gt=0, le=10, description="PSI above which a feature or the score drifted."
    )
    ws_heartbeat_seconds: float = Field(
        default=20.0, gt=0, description="How often the server pings each WebSocket client."
    )
    ws_idle_timeout_seconds: float = Field(
        default=60.0, gt=0, description="Close a client that has sent nothing for this long."
    )
    ws_send_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Close a client whose socket accepts nothing this long."
    )
    ws_queue_size: int = Field(
        default=1000, ge=1, description="Events held per client; beyond, the oldest are dropped."
    )
    ws_flush_interval_ms: float = Field(
        default=20.0, ge=0, le=1000,
        description="Events reach clients at most this often: a busy hub writes several at once.",
    )  # fmt: skip
    ws_recheck_seconds: float = Field(
        default=10.0, gt=0, le=10,
        description="How often open WebSockets are checked for an expired token or revoked key.",
    )  # fmt: skip
    ws_max_connections: int = Field(default=10_000, ge=1, description="Per worker.")
    log_format: Literal["console", "json"] | None = Field(
        default=None,
        description="`console` (for a person) or `json` (one object per line, for a log "
        "shipper); default: console when standard error is a terminal, else json.",
    )
    access_log: bool = Field(
        default=True, description="One line per HTTP request (request id, route, status, ms)."
    )
    batch_progress_chunk: int = Field(
        default=25, ge=1, le=100, description="Leads per batch chunk (one progress event each)."
    )

    ghl_webhook_public_key: str | None = Field(
        default=None,
        description="GoHighLevel's webhook signing key (PEM text); default: the published key.",
    )
    webhook_max_age_seconds: float = Field(
        default=300.0, gt=0, le=86_400, description="A webhook timestamped further off is refused."
    )
    crm_inbox_max_pending: int = Field(
        default=50_000, ge=1, description="Webhooks waiting beyond this answer 429 (retry later)."
    )
    crm_poll_seconds: float = Field(
        default=1.0, gt=0, le=60,
        description="How often each worker looks for webhooks and write-backs of other workers.",
    )  # fmt: skip
    crm_retry_base_seconds: float = Field(
        default=2.0, gt=0, le=3600, description="First retry delay of a failed write-back."
    )
    crm_retry_max_seconds: float = Field(
        default=300.0, gt=0, le=86_400, description="Longest delay between write-back retries."
    )
    crm_max_attempts: int = Field(
        default=12, ge=1, le=100, description="Write-back attempts before it is marked failed."
    )
    anthropic_api_key: SecretStr | None = Field(
        default=None, description="Turns the LLM qualifier on (escalated leads go to Claude)."
    )
    anthropic_model: str = Field(default="claude-haiku-4-5", max_length=100)
    llm_calls_per_hour: int = Field(
        default=60, ge=1, le=100_000, description="LLM qualifications per team per hour."
    )
    llm_min_confidence: float = Field(
        default=0.7, ge=0, le=1, description="Below this the LLM's answer waits for a person."
    )
    llm_max_attempts: int = Field(
        default=3, ge=1, le=20, description="LLM calls for one lead before a person takes it."
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        """Operators write `a,b` in an environment variable; a JSON list is accepted too."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [origin.strip() for origin in text.split(",") if origin.strip()]

    @model_validator(mode="after")
    def _safe_secret(self) -> ServiceSettings:
        """A default or short secret lets anyone mint tokens: only the demo may run with one."""
        secret = self.jwt_secret.get_secret_value() if self.jwt_secret else None
        if self.demo:
            if secret is None:
                self.jwt_secret = SecretStr(DEMO_JWT_SECRET)
            return self
        problem = secret_problem(secret)
        if problem is not None:
            raise ValueError(
                f"LEADSCORE_JWT_SECRET {problem}: set it to a random secret of at least "
                f"{MIN_SECRET_LENGTH} characters, e.g. `python -c 'import secrets; "
                f"print(secrets.token_urlsafe(48))'` (or run the demo with LEADSCORE_DEMO=true)"
            )
        return self

    @model_validator(mode="after")
    def _usable_redis(self) -> ServiceSettings:
        """A wrong Redis URL or CA file is refused now, not at the first score."""
        if self.redis_url or self.redis_ca_file is not None:
            try:
                self.redis_address  # noqa: B018 (parsed for its errors)
            except ConfigurationError as exc:
                raise ValueError(str(exc)) from exc
        return self

    @property
    def redis_address(self) -> RedisAddress | None:
        """The parsed Redis address (TLS context included), or None without Redis."""
        if not self.redis_url:
            if self.redis_ca_file is not None:
                raise ConfigurationError("LEADSCORE_REDIS_CA_FILE is set without a Redis URL")
            return None
        return RedisAddress.parse(self.redis_url, self.redis_ca_file)

    @property
    def secret(self) -> str:
        """The JWT signing secret (validated above)."""
        assert self.jwt_secret is not None
        return self.jwt_secret.get_secret_value()
