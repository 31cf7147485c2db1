"""Settings: the only place LeadScore reads its environment (`LEADSCORE_*`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Final

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEMO_JWT_SECRET: Final = "leadscore-demo-secret-not-for-production-use"
MIN_SECRET_LENGTH: Final = 32


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


class ServiceSettings(Settings):
    """The API server's configuration; refuses an unsafe JWT secret outside demo mode."""

    demo: bool = False
    database_url: str | None = Field(default=None, description="Default: SQLite in `home`.")
    redis_url: str | None = None
    jwt_secret: SecretStr | None = None
    jwt_algorithm: str = Field(default="HS256", pattern="^HS(256|384|512)$")
    jwt_issuer: str = "leadscore"
    jwt_audience: str = "leadscore-api"
    jwt_ttl_seconds: int = Field(default=900, ge=60, le=86_400)
    rate_limit_per_minute: int = Field(default=1200, ge=1)
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated origins, or a JSON list."
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_upload_bytes: int = Field(
        default=200 * 1_048_576, ge=1024, description="A CRM export uploaded for training."
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
    ws_max_connections: int = Field(default=10_000, ge=1, description="Per worker.")
    batch_progress_chunk: int = Field(
        default=25, ge=1, le=100, description="Leads per batch chunk (one progress event each)."
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
        if secret is None or secret == DEMO_JWT_SECRET or len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"LEADSCORE_JWT_SECRET must be set to a random secret of at least "
                f"{MIN_SECRET_LENGTH} characters (or run the demo with LEADSCORE_DEMO=true)"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        """The configured database, or the embedded SQLite file."""
        return self.database_url or f"sqlite+aiosqlite:///{self.home / 'leadscore.db'}"

    @property
    def secret(self) -> str:
        """The JWT signing secret (validated above)."""
        assert self.jwt_secret is not None
        return self.jwt_secret.get_secret_value()
