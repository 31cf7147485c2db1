"""A team's column mapping: its own CRM fields, which its models learn from and score with."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from leadscore.core.errors import NotFoundError
from leadscore.engine.attributes import AttributeSpec
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


def attributes_of(document: dict[str, Any] | None) -> AttributeSpec:
    """The attributes a stored mapping declares (none without one)."""
    if document is None:
        return AttributeSpec()
    return mapping_from_document(document, "the stored mapping").attribute_spec
