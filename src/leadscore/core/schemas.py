"""Shapes every domain's contract shares: the error body and the strict request base."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorResponse(BaseModel):
    """Every error: a stable code and a human detail."""

    error: str
    detail: Any


def validation_detail(
    errors: Iterable[Mapping[str, Any]], root: str = "body"
) -> list[dict[str, str]]:
    """Pydantic errors as the field a client must fix, the message and its type; `root`
    names a problem with the whole value (a request body's own `body` prefix is dropped)."""
    return [
        {
            "field": ".".join(str(p) for p in e["loc"] if p != "body") or root,
            "message": e["msg"],
            "type": e["type"],
        }
        for e in errors
    ]
