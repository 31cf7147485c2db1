"""The LeadScore error tree: each error carries the status code an API would answer with.

The engine's own errors (bad input, bad training data, a broken artifact) are defined with the
engine, which imports nothing of the service; the service's are added here.
"""

from __future__ import annotations

from typing import Final

from leadscore.engine.errors import (
    InvalidInputError,
    LeadScoreError,
    MappingError,
    ModelArtifactError,
    TrainingDataError,
)

__all__ = [
    "DATABASE_DOWN",
    "ConfigurationError",
    "DatabaseUnavailableError",
    "InvalidInputError",
    "LeadScoreError",
    "MappingError",
    "ModelArtifactError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitedError",
    "TrainingDataError",
]


class NotFoundError(LeadScoreError):
    """Nothing with that id exists for the caller's team."""

    status_code = 404
    code = "not_found"


class ConfigurationError(LeadScoreError):
    """The service cannot start as configured (unsafe secret, unmigrated database, no Redis)."""

    status_code = 503
    code = "misconfigured"


class RateLimitedError(LeadScoreError):
    """Too many requests for this key in the current window."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, retry_after_seconds: float) -> None:
        super().__init__(f"rate limit exceeded; retry in {retry_after_seconds:.1f} s")
        self.retry_after_seconds = retry_after_seconds

    def headers(self) -> dict[str, str]:
        """Retry-After in whole seconds, at least 1."""
        return {"Retry-After": str(max(1, int(self.retry_after_seconds + 0.999)))}


class PayloadTooLargeError(LeadScoreError):
    """A request body over the configured limit."""

    status_code = 413
    code = "payload_too_large"


#: What a route answers (and /health reports) while the database cannot be reached.
DATABASE_DOWN: Final = "the database is unreachable; retry shortly"


class DatabaseUnavailableError(LeadScoreError):
    """The database cannot be reached (or did not answer in time): retry shortly."""

    status_code = 503
    code = "database_unavailable"
    retry_after_seconds = 5

    def headers(self) -> dict[str, str]:
        """Retry-After: an outage is usually a restart or a failover, seconds not minutes."""
        return {"Retry-After": str(self.retry_after_seconds)}
