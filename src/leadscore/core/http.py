"""What every domain's routes share: the JSON media type, path parameters, error responses."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import (
    Header,
    Path,
)
from pydantic import BaseModel

from leadscore.core.schemas import ErrorResponse

JSON = "application/json"


LeadIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,100}$", max_length=100)]
# The writes a client retries (score, batch-score, outcomes): the same key from the same team
# within a day gets the first answer instead of acting twice (core/idempotency.py).
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", description="a retry with the same key acts once"),
]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 413, 422, 429, 503)
}


VersionPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a body the route parses itself (`leadscore.app` adds the schemas)."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {JSON: {"schema": schema}}}}
