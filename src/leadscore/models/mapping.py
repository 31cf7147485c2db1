"""A team's column mapping: its own CRM fields, which its models learn from and score with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
from sqlalchemy.ext.asyncio import AsyncSession

from leadscore.core.errors import NotFoundError
from leadscore.engine.attributes import ATTRIBUTE_PREFIX, AttributeSpec
from leadscore.engine.mapping import ColumnMapping, mapping_from_document
from leadscore.models import repository as repo


async def team_mapping(session: AsyncSession, team_id: int) -> ColumnMapping:
    """The team's mapping; not found until it sets one."""
    document = await repo.team_mapping(session, team_id)
    if document is None:
        raise NotFoundError("the team has no mapping yet: PUT one to use its own CRM fields")
    return mapping_from_document(document, "the stored mapping")


async def set_team_mapping(
    session: AsyncSession, team_id: int, document: dict[str, Any]
) -> ColumnMapping:
    """Validate and store the team's mapping (422 naming the first problem, nothing stored);
    its next model learns the attributes it declares."""
    mapping = mapping_from_document(document, "mapping")
    await repo.set_team_mapping(session, team_id, mapping.model_dump(mode="json"))
    return mapping


def attributes_of(
    document: dict[str, Any] | None, connected: Sequence[str], frame: pl.DataFrame
) -> AttributeSpec:
    """The attributes a team model learns: those its stored mapping declares; without one,
    those its CRM connections map custom fields to, typed by the values it has."""
    if document is not None:
        return mapping_from_document(document, "the stored mapping").attribute_spec
    columns = {name: frame[ATTRIBUTE_PREFIX + name].to_list() for name in connected
               if ATTRIBUTE_PREFIX + name in frame.columns}  # fmt: skip
    return AttributeSpec.inferred(columns)
