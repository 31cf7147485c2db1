"""The model registry: versions with their artifacts, champion/challenger aliases, promotion,
rollback, and the watcher that makes every worker serve the current champions."""

from __future__ import annotations

import asyncio
import io
import logging
import shutil
import tarfile
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, cast

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.auth import repository as auth_repo
from leadscore.auth.principal import Principal
from leadscore.auth.service import ForbiddenError
from leadscore.core.db import is_connection_error
from leadscore.core.errors import LeadScoreError, ModelArtifactError, NotFoundError
from leadscore.core.lifecycle import Background, Periodic
from leadscore.core.logs import DependencyLog
from leadscore.core.tables import ModelChangeRow, ModelVersionRow
from leadscore.core.timestamps import iso_z
from leadscore.engine.model import LeadModel
from leadscore.engine.scorer import Scorer
from leadscore.live import events
from leadscore.live.events import EventPublisher
from leadscore.models import repository as repo
from leadscore.models.compare import compare_versions
from leadscore.models.holder import Lineup, LiveModel, ModelHolder, Trial, TrialMode

log = logging.getLogger(__name__)

GLOBAL: Final = "global"
CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"


@dataclass(frozen=True)
class ScopePlan:
    """What the registry says a scope serves: its champion, and a challenger under trial."""

    champion: str | None
    challenger: str | None = None  # only while a trial runs and a challenger exists
    mode: TrialMode | None = None
    share: float = 0.0


class PromotionRefusedError(LeadScoreError):
    """The change would break the promotion rules; nothing was changed."""

    status_code = 409
    code = "promotion_refused"


class TrialRefusedError(LeadScoreError):
    """A trial needs a challenger that differs from the champion; nothing was changed."""

    status_code = 409
    code = "trial_refused"


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


def _serving(aliases: dict[tuple[str, str], str], scope: str) -> str | None:
    """The version that scores a scope's leads: its own champion, else the global one."""
    return aliases.get((scope, CHAMPION)) or aliases.get((GLOBAL, CHAMPION))


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
        "registered_at": iso_z(row.registered_at),
        "trained_at": card.get("created_at"),  # the card says when training finished
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
        "at": iso_z(row.at),
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
            if await repo.model_version(session, model.version_) is None:
                artifact = await asyncio.to_thread(pack_artifact, directory)
                new = await repo.register_model(
                    session, model.version_, str(directory), model.card_, now, artifact=artifact,
                    team_id=team_id, parent_version=parent_version, trained_by=trained_by,
                )  # fmt: skip
            else:
                new = False
            if as_challenger:
                await repo.set_alias(session, scope_of(team_id), CHALLENGER, model.version_, now)
        return new

    async def team_id(self, name: str) -> int:
        """A team's id by name (for the command line)."""
        async with self.sessions() as session:
            team = await auth_repo.team_by_name(session, name)
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

    async def renew(self, scope: str, job: str) -> bool:
        """Extend a running job's lease; False if it was lost (it expired and was taken)."""
        async with self.sessions() as session, session.begin():
            return await repo.renew_lease(session, scope, job, datetime.now(UTC))

    async def release(self, scope: str, job: str) -> None:
        """End a training job's lease."""
        async with self.sessions() as session, session.begin():
            await repo.release_lease(session, scope, job)

    async def champions(self) -> dict[str, str]:
        """scope → the version that serves it."""
        async with self.sessions() as session:
            aliases = await repo.model_aliases(session)
        return {scope: version for (scope, alias), version in aliases.items() if alias == CHAMPION}

    async def plan(self) -> dict[str, ScopePlan]:
        """scope → what it serves: one read of the aliases and the running trials."""
        async with self.sessions() as session:
            aliases = await repo.model_aliases(session)
            trials = await repo.model_experiments(session)
        scopes = {scope for scope, alias in aliases if alias == CHAMPION} | set(trials)
        plan = {}
        for scope in scopes:
            champion = aliases.get((scope, CHAMPION))
            trial = trials.get(scope)
            challenger = aliases.get((scope, CHALLENGER))
            if trial is None or challenger is None:
                plan[scope] = ScopePlan(champion)
            else:
                mode = cast(TrialMode, trial.mode)
                plan[scope] = ScopePlan(champion, challenger, mode, trial.share)
        return plan

    async def trial(self, team_id: int | None) -> dict[str, Any]:
        """A scope's trial: mode, share, the two versions, since when and by whom."""
        scope = scope_of(team_id)
        async with self.sessions() as session:
            aliases = await repo.model_aliases(session)
            running = (await repo.model_experiments(session)).get(scope)
        champion = _serving(aliases, scope)
        challenger = aliases.get((scope, CHALLENGER))
        return {
            "scope": scope,
            "mode": running.mode if running is not None and challenger else "off",
            "share": running.share if running is not None and challenger else 0.0,
            "champion": champion,
            "challenger": challenger,
            "started_at": iso_z(running.started_at) if running is not None else None,
            "actor": running.actor if running is not None else None,
        }

    async def trial_pair(
        self, team_id: int, champion: str | None = None, challenger: str | None = None
    ) -> tuple[str, str]:
        """The versions a team's comparison is about; unnamed ones are what serves the team
        and its challenger (the team's own, else the global one if the global champion
        serves the team)."""
        if champion is not None and challenger is not None:
            return champion, challenger
        async with self.sessions() as session:
            aliases = await repo.model_aliases(session)
        scope = scope_of(team_id)
        serving = _serving(aliases, scope)
        default = aliases.get((scope, CHALLENGER))
        if default is None and serving == aliases.get((GLOBAL, CHAMPION)):
            default = aliases.get((GLOBAL, CHALLENGER))
        challenger = challenger or default
        champion = champion or serving
        if champion is None or challenger is None:
            raise TrialRefusedError(
                f"team {team_id} has no {'challenger' if champion else 'champion'} to compare: "
                "name both versions"
            )
        return champion, challenger

    async def set_trial(
        self, team_id: int | None, mode: str, share: float, *, actor: str
    ) -> dict[str, Any]:
        """Start, change or end (`off`) a scope's champion/challenger trial, recorded."""
        scope = scope_of(team_id)
        now = datetime.now(UTC)
        async with self.sessions() as session, session.begin():
            aliases = await repo.model_aliases(session)
            champion = _serving(aliases, scope)
            challenger = aliases.get((scope, CHALLENGER))
            if champion is None:
                raise TrialRefusedError("no champion yet: promote one or start the server once")
            if mode == "off":
                if not await repo.end_experiment(session, scope):
                    raise TrialRefusedError(f"no trial is running ({scope})")
            elif challenger is None:
                raise TrialRefusedError(
                    f"no challenger to try ({scope}): train or register one first"
                )
            elif challenger == champion:
                raise TrialRefusedError(f"{challenger} is already the champion ({scope})")
            else:
                await repo.set_experiment(session, scope, mode, share, now, actor)
            change = ModelChangeRow(
                scope=scope, action="trial", from_version=champion,
                to_version=challenger or champion, forced=False,
                detail={"mode": mode, "share": share}, actor=actor, at=now,
            )  # fmt: skip
            await repo.add_model_change(session, change)
        return await self.trial(team_id)

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
            trial_over: dict[str, Any] = {}
            if aliases.get((scope, CHALLENGER)) == version:
                await repo.drop_alias(session, scope, CHALLENGER)
                # The trial tried this version: it has its answer, and must not go on with
                # whatever becomes challenger next.
                if await repo.end_experiment(session, scope):
                    trial_over = {"trial": "ended"}
            change = ModelChangeRow(
                scope=scope, action="promote", from_version=current, to_version=version,
                forced=force, detail={"gate": gate} | trial_over, actor=actor, at=now,
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
            if current is None and scope != GLOBAL:
                raise PromotionRefusedError(
                    f"team {scope} has no champion of its own to roll back: the global model "
                    "serves it"
                )
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

    async def had_champion(self, team_id: int) -> bool:
        """Whether the team has ever had a champion of its own (promoted, or rolled back)."""
        async with self.sessions() as session:
            return await repo.had_champion(session, scope_of(team_id))

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
        if model.version_ != version:
            raise ModelArtifactError(f"artifact of {version} holds model {model.version_}")
        return LiveModel(model, Scorer(model), directory)


class ModelWatcher(Background):
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
        self._ticker = Periodic(
            "model-watcher", interval_seconds, self._check, on_error=self._failed
        )
        self._broken: set[str] = set()
        self._installed: dict[str, ScopePlan] | None = None
        # Checked every second: an outage is one line (and a count every 30 s), not a traceback
        # per check.
        self.database = DependencyLog(log, "database (model watcher, serving what we have)")

    async def refresh(self) -> bool:
        """Load changed models and swap every lineup in together; True when something changed."""
        plan = await self.registry.plan()
        if plan == self._installed:
            return False
        known = self.holder.loaded()

        async def get(version: str | None) -> LiveModel | None:
            if version is None or version in self._broken:
                return None
            if version not in known:
                try:
                    known[version] = await self.registry.load(version)
                except Exception:  # one broken artifact must not stop the other scopes' swaps
                    log.exception("cannot load model %s; serving what we have", version)
                    self._broken.add(version)  # said once, not every second
                    return None
            return known[version]

        wanted = plan.get(GLOBAL)
        if wanted is None or wanted.champion is None:
            return False  # a registry without a global champion is being set up
        champion = await get(wanted.champion) or self.holder.current
        lineups: dict[str, Lineup] = {}
        for scope, want in plan.items():
            serving = (
                champion if scope == GLOBAL else self.holder.lineup(int(scope)).champion
            )  # what serves now stays if the wanted version cannot load
            own = (await get(want.champion) or serving) if want.champion else champion
            challenger = await get(want.challenger)
            trial = (
                Trial(challenger, want.mode, want.share)
                if challenger is not None and want.mode is not None
                else None
            )
            if scope == GLOBAL or want.champion or trial:
                lineups[scope] = Lineup(own, trial)
        self._installed = plan
        teams = {int(scope): lineup for scope, lineup in lineups.items() if scope != GLOBAL}
        before = self.holder.state()
        self.holder.install(lineups[GLOBAL], teams)
        if self.holder.state() == before:
            return False
        self.publisher.emit(
            events.model_status("loaded", champion.version, {"worker": self.worker})
        )
        return True

    def start(self) -> None:
        """Watch in the background."""
        self._ticker.start()

    def _failed(self, exc: Exception) -> None:
        log.error("model registry check failed (serving what we have)", exc_info=exc)

    async def _check(self) -> None:
        """One refresh; an unreachable database is one logged outage, not one line a second."""
        try:
            await self.refresh()
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            self.database.down(f"{type(exc).__name__}: {str(exc)[:200]}")
        else:
            self.database.up()

    async def close(self) -> None:
        """Stop watching."""
        await self._ticker.close()


class ModelAdmin:
    """What an admin may do with the models: their team's, and the global ones only when
    their team runs the deployment (`LEADSCORE_GLOBAL_MODELS_TEAM`; else the command line)."""

    def __init__(
        self,
        registry: Registry,
        watcher: ModelWatcher,
        publisher: EventPublisher,
        global_models_team: str | None = None,
        flush: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.registry = registry
        self.watcher = watcher
        self.publisher = publisher
        self.global_models_team = global_models_team
        self.flush = flush  # stores the scores still queued, so a comparison sees them

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

    async def rollback(self, principal: Principal, *, team_scope: bool | None) -> dict[str, Any]:
        """Return the global (or the team's) champion to the previous one; unset, the caller's
        own scope: its team's once that has had a champion (never the global model by
        surprise), else the global one when the caller runs it."""
        if team_scope is None:
            team_scope = principal.team_name != self.global_models_team or (
                await self.registry.had_champion(principal.team_id)
            )
        team_id = principal.team_id if team_scope else None
        self._may_change(principal, team_id)
        change = await self.registry.rollback(team_id, actor=f"key {principal.key_id}")
        await self._announce("rolled_back", change)
        return change

    async def trial(self, principal: Principal, *, team_scope: bool) -> dict[str, Any]:
        """The global (or the team's) champion/challenger trial."""
        return await self.registry.trial(principal.team_id if team_scope else None)

    async def compare(
        self, principal: Principal, champion: str | None, challenger: str | None
    ) -> dict[str, Any]:
        """Both versions on the team's same leads with outcomes (default: its trial's pair)."""
        if champion is None or challenger is None:
            default_champion, default_challenger = await self.registry.trial_pair(principal.team_id)
            champion = champion or default_champion
            challenger = challenger or default_challenger
        for version in (champion, challenger):
            await self.show(principal.team_id, version)  # 404 unless global or the team's
        if self.flush is not None:
            await self.flush()
        return await compare_versions(
            self.registry.sessions, principal.team_id, champion, challenger
        )

    async def set_trial(
        self, principal: Principal, mode: str, share: float, *, team_scope: bool
    ) -> dict[str, Any]:
        """Start, change or end a trial; every worker follows within seconds, announced."""
        team_id = principal.team_id if team_scope else None
        self._may_change(principal, team_id)
        trial = await self.registry.set_trial(team_id, mode, share, actor=f"key {principal.key_id}")
        await self.watcher.refresh()
        version = trial["challenger"] or trial["champion"]
        self.publisher.emit(events.model_status("trial", version, trial, team_id))
        return trial

    async def _announce(self, status: str, change: dict[str, Any]) -> None:
        await self.watcher.refresh()
        scope = change["scope"]
        team_id = None if scope == GLOBAL else int(scope)
        self.publisher.emit(events.model_status(status, change["to_version"], change, team_id))
