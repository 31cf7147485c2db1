"""Registry and watcher on a real SQLite database: a broken champion never stops serving."""

from __future__ import annotations

import asyncio
import io
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.core.bus import MemoryBus
from leadscore.core.errors import ModelArtifactError
from leadscore.engine.model import LeadModel
from leadscore.live.events import EventPublisher
from leadscore.models import repository as repo
from leadscore.models.artifacts import pack_artifact, unpack_artifact
from leadscore.models.holder import ModelHolder
from leadscore.models.registry import CHAMPION, GLOBAL, Registry
from leadscore.models.watcher import ModelWatcher
from tests.units import Committing


async def test_a_champion_that_cannot_load_leaves_the_serving_model_in_place(
    sessions: async_sessionmaker[AsyncSession], model_dir: Path, tmp_path: Path
) -> None:
    registry = Committing(Registry(tmp_path / "artifacts"), sessions)
    model = LeadModel.load(model_dir)
    await registry.register(model, model_dir, trained_by="tests")
    await registry.ensure_champion(model.version_, actor="tests")
    holder = ModelHolder(await registry.load(model.version_))
    watcher = ModelWatcher(sessions, registry.service, holder, EventPublisher(MemoryBus()), "w1")
    assert await watcher.refresh() is False  # already serving the champion
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        await repo.register_model(session, "broken0000000000", "/nowhere", {}, now,
                                  artifact=b"not a tar.gz")  # fmt: skip
        await repo.set_alias(session, GLOBAL, CHAMPION, "broken0000000000", now)
    assert await watcher.refresh() is False
    assert holder.current.version == model.version_  # still serving, no exception
    assert "broken0000000000" in watcher._broken


async def test_rollback_walks_back_through_promotions(
    sessions: async_sessionmaker[AsyncSession], model_dir: Path, other_model_dir: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    registry = Committing(Registry(tmp_path / "artifacts"), sessions)
    first, second = LeadModel.load(model_dir), LeadModel.load(other_model_dir)
    await registry.register(first, model_dir, trained_by="tests")
    await registry.ensure_champion(first.version_, actor="tests")
    await registry.register(second, other_model_dir, trained_by="tests", as_challenger=True)
    change = await registry.promote(second.version_, actor="tests", force=True)
    assert (change["from_version"], change["to_version"]) == (first.version_, second.version_)
    assert (await registry.champions())[GLOBAL] == second.version_
    back = await registry.rollback(None, actor="tests")
    assert back["to_version"] == first.version_
    assert (await registry.champions())[GLOBAL] == first.version_
    listed = {m["version"]: m for m in await registry.list()}
    assert listed[first.version_]["aliases"] == ["champion"]
    assert listed[first.version_]["trained_at"] == first.card_["created_at"]  # not null
    assert (await registry.show(second.version_))["trained_at"] == second.card_["created_at"]


def test_artifacts_unpack_once_per_host_and_only_as_plain_files(tmp_path: Path) -> None:
    source = tmp_path / "model"
    source.mkdir()
    (source / "card.json").write_text("{}")
    (source / "conversion.lgb").write_text("trees")
    data = pack_artifact(source)
    target = tmp_path / "artifacts" / "v1"
    assert unpack_artifact(data, target) == target
    assert unpack_artifact(data, target) == target  # a second worker finds it unpacked
    assert sorted(p.name for p in (tmp_path / "artifacts").iterdir()) == ["v1"]  # no leftovers
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        entry = tarfile.TarInfo("../escape.txt")
        entry.size = 1
        archive.addfile(entry, io.BytesIO(b"x"))
    with pytest.raises(ModelArtifactError, match="unexpected entry"):
        unpack_artifact(buffer.getvalue(), tmp_path / "artifacts" / "v2")
    assert not (tmp_path / "escape.txt").exists()
    assert sorted(p.name for p in (tmp_path / "artifacts").iterdir()) == ["v1"]


async def test_a_renewed_lease_holds_and_a_stale_one_is_taken(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    registry = Committing(Registry(tmp_path / "artifacts"), sessions)
    ttl = timedelta(seconds=0.5)
    assert await registry.lease("7", "job1", ttl)
    assert not await registry.lease("7", "job2", ttl)  # one job per scope
    await asyncio.sleep(0.3)
    assert await registry.renew("7", "job1")
    await asyncio.sleep(0.3)  # 0.6 s after it was taken, 0.3 s after its renewal
    assert not await registry.lease("7", "job2", ttl)
    await asyncio.sleep(0.6)  # job1 stopped renewing (it crashed): its lease is stale
    assert await registry.lease("7", "job2", ttl)
    assert not await registry.renew("7", "job1")  # and it would know it lost it


async def test_a_running_job_keeps_renewing_its_lease(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    from leadscore.models.training import RetrainService

    registry = Committing(Registry(tmp_path / "artifacts"), sessions)
    ttl = timedelta(seconds=0.4)
    service = RetrainService(
        sessions, registry.service, "sqlite+aiosqlite://", tmp_path / "staging", lease=ttl
    )
    assert await registry.lease("7", "long", ttl)
    async with service._leased("7", "long"):
        for _ in range(5):  # 1.25 s: three times the lease, renewed every 0.1 s
            await asyncio.sleep(0.25)
            assert not await registry.lease("7", "other", ttl)
    assert await registry.lease("7", "other", ttl)  # released at the end
