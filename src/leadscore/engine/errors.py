"""Errors of the engine: each carries the status code an API would answer with."""

from __future__ import annotations

from typing import ClassVar


class LeadScoreError(Exception):
    """Base of every error the product raises on purpose; never caught to fake a result."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def headers(self) -> dict[str, str]:
        """Extra HTTP headers an API answer for this error carries."""
        return {}


class InvalidInputError(LeadScoreError):
    """Input that cannot be accepted as given."""

    status_code = 422
    code = "validation_error"


class TrainingDataError(InvalidInputError):
    """Training data that cannot produce an honest model (missing or constant label, too few)."""

    code = "training_data_error"


class MappingError(InvalidInputError):
    """A column mapping that does not fit its file."""

    code = "mapping_error"


class ModelArtifactError(LeadScoreError):
    """A model directory that is missing, altered, or built for another feature spec."""

    status_code = 503
    code = "model_unavailable"
