"""One Settings object: the only place LeadScore reads its environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime configuration from `LEADSCORE_*` variables; defaults run the embedded demo."""

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
