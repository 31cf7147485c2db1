"""The model registry: versions with their artifacts, champion/challenger aliases, promotion,
rollback, and the watcher that makes every worker serve the current champions."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import shutil
import tarfile
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.engine.model import LeadModel
from leadscore.engine.scorer import Scorer
from leadscore.errors import LeadScoreError, ModelArtifactError
from leadscore.services import events
from leadscore.services.auth import ForbiddenError
from leadscore.services.events import EventPublisher
from leadscore.services.models import LiveModel, ModelHolder
from leadscore.services.scoring import NotFoundError, Principal
from leadscore.store import repositories as repo
from leadscore.store.tables import ModelChangeRow, ModelVersionRow

log = logging.getLogger(__name__)

GLOBAL: Final = "global"
CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"


class PromotionRefusedError(LeadScoreError):
    """The change would break the promotion rules; nothing was changed."""

    status_code = 409
    code = "promotion_refused"


def scope_of(team_id: int | None) -> str:
    """Aliases are per team, or global for the model every other team uses."""
    return GLOBAL if team_id is None else str(team_id)


def pack_artifact(directory: Path) -> bytes:
    """A model directory as tar.gz bytes (flat: the artifact has no subdirectories)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(directory.iterdir()):
            if path.is_file():
                archive.add(path, arcname=path.name)
    return buffer.getvalue()


def unpack_artifact(data: bytes, directory: Path) -> Path:
    """Write an artifact's files into `directory`, atomically and only plain file names."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=directory.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive.getmembers():
                if not member.isfile() or Path(member.name).name != member.name:
                    raise ModelArtifactError(f"unexpected entry in model artifact: {member.name}")
                source = archive.extractfile(member)
                assert source is not None
                (staging / member.name).write_bytes(source.read())
        try:
            staging.rename(directory)
        except OSError:
            if not (directory / "card.json").is_file():
                raise
            shutil.rmtree(staging)  # another worker unpacked the same version meanwhile
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _describe(row: ModelVersionRow, aliases: dict[tuple[str, str], str]) -> dict[str, Any]:
    card = row.card
    return {
        "version": row.version,
        "team_id": row.team_id,
        "aliases": sorted(
            f"{alias}" if scope == GLOBAL else f"{alias}@team:{scope}"
            for (scope, alias), version in aliases.items()
            if version == row.version
        ),
        "registered_at": row.registered_at.isoformat().replace("+00:00", "Z"),
        "trained_at": card.get("trained_at"),
        "parent_version": row.parent_version,
        "trained_by": row.trained_by,
        "metrics": card.get("metrics"),
        "data_fingerprint": card.get("data_fingerprint"),
        "feature_spec": card.get("feature_spec"),
    }


def _change(row: ModelChangeRow) -> dict[str, Any]:
    return {
        "scope": row.scope,
        "action": row.action,
        "from_version": row.from_version,
        "to_version": row.to_version,
        "forced": row.forced,
        "detail": row.detail,
        "actor": row.actor,
        "at": row.at.isoformat().replace("+00:00", "Z"),
    }


class Registry:
    """Versions, aliases and their history in the database; artifacts unpacked on demand."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], artifacts: Path) -> None:
        self.sessions = sessions
        self.artifacts = artifacts

    async def register(
        self,
        model: LeadModel,
        directory: Path,
        *,
        team_id: int | None = None,
        parent_version: str | None = None,
        trained_by: str,
        as_challenger: bool = False,
    ) -> bool:
        """Store a version with its artifact; optionally make it its scope's challenger."""
        now = datetime.now(UTC)
        async with self.sessions() as session, session.begin():
            if await repo.model_version(session, model.version) is None:
                artifact = await asyncio.to_thread(pack_artifact, directory)
                new = await repo.register_model(
                    session, model.version, str(directory), model.card, now, artifact=artifact,
                    team_id=team_id, parent_version=parent_version, trained_by=trained_by,
                )  # fmt: skip
            else:
                new = False
            if as_challenger:
                await repo.set_alias(session, scope_of(team_id), CHALLENGER, model.version, now)
        return new

    async def team_id(self, name: str) -> int:
        """A team's id by name (for the command line)."""
        async with self.sessions() as session:
            team = await repo.team_by_name(session, name)
        if team is None:
            raise NotFoundError(f"no team named {name!r}")
        return team.id

    async def ensure_champion(self, version: str, actor: str) -> None:
        """The first model a fresh registry sees becomes the global champion."""
        async with self.sessions() as session, session.begin():
            aliases = await repo.model_aliases(session)
            if (GLOBAL, CHAMPION) in aliases:
                return
            now = datetime.now(UTC)
            await repo.set_alias(session, GLOBAL, CHAMPION, version, now)
            await repo.add_model_change(
                session,
                ModelChangeRow(
                    scope=GLOBAL, action="bootstrap", from_version=None, to_version=version,
                    forced=False, detail={}, actor=actor, at=now,
                ),
            )  # fmt: skip

    async def lease(self, scope: str, job: str, ttl: timedelta) -> bool:
        """One training job per scope across all workers; a crashed job's lease expires."""
        now = datetime.now(UTC)
        async with self.sessions() as session, session.begin():
            return await repo.take_lease(session, scope, job, now, now - ttl)

    async def release(self, scope: str, job: str) -> None:
        """End a training job's lease."""
        async with self.sessions() as session, session.begin():
            await repo.release_lease(session, scope, job)

    async def champions(self) -> dict[str, str]:
        """scope → the version that serves it."""
        async with self.sessions() as session:
            aliases = await repo.model_aliases(session)
        return {scope: version for (scope, alias), version in aliases.items() if alias == CHAMPION}

    async def list(self) -> list[dict[str, Any]]:
        """Every version with its aliases and card summary, newest first."""
        async with self.sessions() as session:
            rows = await repo.model_versions(session)
            aliases = await repo.model_aliases(session)
        return [_describe(row, aliases) for row in rows]

    async def show(self, version: str) -> dict[str, Any]:
        """One version: its summary, its whole card, and its scope's alias history."""
        async with self.sessions() as session:
            row = await repo.model_version(session, version)
            if row is None:
                raise NotFoundError(f"no model version {version!r}")
            aliases = await repo.model_aliases(session)
            history = await repo.model_changes(session, scope_of(row.team_id))
        return _describe(row, aliases) | {
            "card": row.card,
            "history": [_change(c) for c in history],
        }

    async def promote(
        self, version: str, *, actor: str, force: bool, detail: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Make a version its scope's champion: forced, or after the gate passed it."""
        async with self.sessions() as session, session.begin():
            row = await repo.model_version(session, version)
            if row is None:
                raise NotFoundError(f"no model version {version!r}")
            gate = (row.card.get("gate") or {}) if detail is None else detail
            if not force and not gate.get("passed"):
                raise PromotionRefusedError(
                    f"{version} has not passed the promotion gate against the champion; "
                    "train it through the registry (which evaluates it) or promote with force"
                )
            scope = scope_of(row.team_id)
            aliases = await repo.model_aliases(session)
            current = aliases.get((scope, CHAMPION))
            if current == version:
                raise PromotionRefusedError(f"{version} is already the champion")
            now = datetime.now(UTC)
            await repo.set_alias(session, scope, CHAMPION, version, now)
            if aliases.get((scope, CHALLENGER)) == version:
                await repo.drop_alias(session, scope, CHALLENGER)
            change = ModelChangeRow(
                scope=scope, action="promote", from_version=current, to_version=version,
                forced=force, detail={"gate": gate}, actor=actor, at=now,
            )  # fmt: skip
            await repo.add_model_change(session, change)
        return _change(change)

    async def rollback(self, team_id: int | None, *, actor: str) -> dict[str, Any]:
        """Serve the champion before the current one again (repeat to go further back)."""
        scope = scope_of(team_id)
        async with self.sessions() as session, session.begin():
            aliases = await repo.model_aliases(session)
            current = aliases.get((scope, CHAMPION))
            undone = 0
            target: str | None = None
            for change in await repo.model_changes(session, scope, limit=10_000):
                if change.action == "rollback":
                    undone += 1
                elif change.action == "promote":
                    if undone:
                        undone -= 1
                        continue
                    target = change.from_version
                    break
            if current is None or (target is None and scope == GLOBAL):
                raise PromotionRefusedError(f"no earlier champion to return to ({scope})")
            now = datetime.now(UTC)
            detail: dict[str, Any] = {}
            if target is None:  # the team's first own champion: back to the global model
                await repo.drop_alias(session, scope, CHAMPION)
                target = aliases[(GLOBAL, CHAMPION)]
                detail = {"fallback": "global"}
            else:
                await repo.set_alias(session, scope, CHAMPION, target, now)
            change = ModelChangeRow(
                scope=scope, action="rollback", from_version=current, to_version=target,
                forced=False, detail=detail, actor=actor, at=now,
            )  # fmt: skip
            await repo.add_model_change(session, change)
        return _change(change)

    async def load(self, version: str) -> LiveModel:
        """A version ready to serve: unpacked once per host, loaded and checked."""
        directory = self.artifacts / version
        if not (directory / "card.json").is_file():
            async with self.sessions() as session:
                row = await repo.model_version(session, version)
            if row is None or row.artifact is None:
                if row is not None and Path(row.path, "card.json").is_file():
                    directory = Path(row.path)  # registered before artifacts were stored
                else:
                    raise ModelArtifactError(f"model {version} has no stored artifact")
            else:
                await asyncio.to_thread(unpack_artifact, row.artifact, directory)
        model = await asyncio.to_thread(LeadModel.load, directory)
        if model.version != version:
            raise ModelArtifactError(f"artifact of {version} holds model {model.version}")
        return LiveModel(model, Scorer(model), directory)


class ModelWatcher:
    """Makes this worker serve the registry's champions, checked every `interval` seconds.

    A new champion is loaded beside the serving one and swapped in whole: a request that took
    the old one finishes with it. Promotion and rollback reach every worker within seconds.
    """

    def __init__(
        self,
        registry: Registry,
        holder: ModelHolder,
        publisher: EventPublisher,
        worker: str,
        interval_seconds: float = 1.0,
    ) -> None:
        self.registry = registry
        self.holder = holder
        self.publisher = publisher
        self.worker = worker
        self.interval = interval_seconds
        self._task: asyncio.Task[None] | None = None
        self._broken: set[str] = set()

    async def refresh(self) -> bool:
        """Load changed champions and swap them in together; True when something changed."""
        champions = await self.registry.champions()
        serving = self.holder.versions()
        if champions == serving:
            return False
        loaded: dict[str, LiveModel] = {}
        for scope, version in champions.items():
            current = self.holder.by_scope(scope)
            if current is not None and current.version == version:
                loaded[scope] = current
                continue
            if version in self._broken:
                if current is not None:
                    loaded[scope] = current
                continue
            try:
                loaded[scope] = await self.registry.load(version)
            except Exception:  # one broken artifact must not stop the other scopes' swaps
                log.exception("cannot load champion %s of %s; serving what we have", version, scope)
                self._broken.add(version)  # said once, not every second
                if current is not None:
                    loaded[scope] = current
        if GLOBAL not in loaded:
            return False  # a registry without a global champion is being set up
        if {s: m.version for s, m in loaded.items()} == serving:
            return False
        teams = {int(scope): live for scope, live in loaded.items() if scope != GLOBAL}
        self.holder.install(loaded[GLOBAL], teams)
        self.publisher.emit(
            events.model_status("loaded", loaded[GLOBAL].version, {"worker": self.worker})
        )
        return True

    def start(self) -> None:
        """Watch in the background."""
        self._task = asyncio.create_task(self._run(), name="model-watcher")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except SQLAlchemyError as exc:
                log.warning("model registry check failed (serving what we have): %s", exc)
            except Exception:  # the watcher must outlive any one bad check
                log.exception("model registry check failed (serving what we have)")

    async def close(self) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class ModelAdmin:
    """What an admin may do with the models: their team's, and the global ones only when
    their team runs the deployment (`LEADSCORE_GLOBAL_MODELS_TEAM`; else the command line)."""

    def __init__(
        self,
        registry: Registry,
        watcher: ModelWatcher,
        publisher: EventPublisher,
        global_models_team: str | None = None,
    ) -> None:
        self.registry = registry
        self.watcher = watcher
        self.publisher = publisher
        self.global_models_team = global_models_team

    @staticmethod
    def _visible(team_id: int, described: dict[str, Any]) -> bool:
        return described["team_id"] in (None, team_id)

    def _may_change(self, principal: Principal, team_id: int | None) -> None:
        if team_id is None and principal.team_name != self.global_models_team:
            raise ForbiddenError(
                "the global model serves every team: only the admins of the team named in "
                "LEADSCORE_GLOBAL_MODELS_TEAM (or the `leadscore models` command) change it"
            )

    async def list(self, team_id: int) -> list[dict[str, Any]]:
        """The global versions and the team's own."""
        return [d for d in await self.registry.list() if self._visible(team_id, d)]

    async def show(self, team_id: int, version: str) -> dict[str, Any]:
        """One version, if global or the team's."""
        described = await self.registry.show(version)
        if not self._visible(team_id, described):
            raise NotFoundError(f"no model version {version!r}")
        return described

    async def promote(
        self, principal: Principal, version: str, *, force: bool, reason: str | None
    ) -> dict[str, Any]:
        """Promote, announce it, and serve it on this worker at once (others within seconds)."""
        described = await self.show(principal.team_id, version)
        self._may_change(principal, described["team_id"])
        try:
            await self.registry.load(version)  # never make champion what cannot serve
        except ModelArtifactError as exc:
            raise PromotionRefusedError(f"{version} cannot be loaded: {exc}") from exc
        detail = None if not force else {"forced": True, "reason": reason}
        actor = f"key {principal.key_id}"
        change = await self.registry.promote(version, actor=actor, force=force, detail=detail)
        await self._announce("promoted", change)
        return change

    async def rollback(self, principal: Principal, *, team_scope: bool) -> dict[str, Any]:
        """Return the global (or the team's) champion to the previous one."""
        team_id = principal.team_id if team_scope else None
        self._may_change(principal, team_id)
        change = await self.registry.rollback(team_id, actor=f"key {principal.key_id}")
        await self._announce("rolled_back", change)
        return change

    async def _announce(self, status: str, change: dict[str, Any]) -> None:
        await self.watcher.refresh()
        scope = change["scope"]
        team_id = None if scope == GLOBAL else int(scope)
        self.publisher.emit(events.model_status(status, change["to_version"], change, team_id))
