"""Which of a team's own fields its model learns: its mapping, else its CRM connections'."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.auth import repository as auth_repo
from leadscore.core.db import transaction
from leadscore.core.tables import CrmConnectionRow
from leadscore.engine.attributes import AttributeSpec
from leadscore.models import repository as repo
from leadscore.models.mapping import attributes_of

MAPPING = {
    "outcomes": {"conversion": {"column": "y", "positive": ["yes"]}},
    "attributes": {"categorical": ["stage"]},
}


def connection(team_id: int, account: str, fields: dict[str, str]) -> CrmConnectionRow:
    now = datetime.now(UTC)
    return CrmConnectionRow(
        team_id=team_id, provider="gohighlevel", account_id=account, name=None, api_base=None,
        credentials=None, signing_secret=None, write_back={}, field_mapping=fields, options={},
        created_at=now, updated_at=now,
    )  # fmt: skip


async def test_the_connections_name_the_attributes_they_fill_once_each_in_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = datetime.now(UTC)
    async with transaction(sessions) as session:
        acme = await auth_repo.create_team(session, "acme", now)
        other = await auth_repo.create_team(session, "globex", now)
        session.add(connection(acme.id, "loc-1", {"cf1": "attributes.agent", "cf2": "timeline",
                                                 "tag:vip": "attributes.vip"}))  # fmt: skip
        session.add(connection(acme.id, "loc-2", {"x": "attributes.agent",
                                                 "y": "attributes.stage"}))  # fmt: skip
        session.add(connection(other.id, "loc-3", {"z": "budget_min"}))
    async with sessions() as session:
        assert await repo.connection_attributes(session, acme.id) == ["agent", "vip", "stage"]
        assert await repo.connection_attributes(session, other.id) == []
        assert await repo.team_mapping(session, acme.id) is None


def test_untyped_fields_are_numbers_only_when_every_value_is_one() -> None:
    spec = AttributeSpec.inferred({
        "visits": ["3", None, "4.5", 7],
        "agent": ["Dana", "2", None],
        "vip": [True, False],
        "empty": [None, "", "  "],
    })  # fmt: skip
    assert spec.numeric == ("visits", "vip")
    assert spec.categorical == ("agent",)


def test_a_stored_mapping_wins_over_the_connections() -> None:
    frame = pl.DataFrame({"attributes.agent": ["Dana", "Sam"], "attributes.visits": ["1", "2"],
                          "attributes.stage": ["new", "won"]})  # fmt: skip
    declared = attributes_of(MAPPING, ["agent", "visits"], frame)
    assert (declared.numeric, declared.categorical) == ((), ("stage",))
    connected = attributes_of(None, ["agent", "visits", "missing"], frame)
    assert (connected.numeric, connected.categorical) == (("visits",), ("agent",))
    assert attributes_of(None, [], frame) == AttributeSpec()
