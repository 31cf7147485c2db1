"""The model registry: versions, aliases (champion, challenger), promotion, rollback, leases."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, cast

from sqlalchemy.ext.asyncio import AsyncSession

from leadscore.auth.service import team_id_by_name
from leadscore.core.errors import LeadScoreError, ModelArtifactError, NotFoundError
from leadscore.core.tables import ModelChangeRow, ModelVersionRow
from leadscore.core.timestamps import iso_z
from leadscore.engine.model import LeadModel
from leadscore.engine.scorer import Scorer
from leadscore.models import repository as repo
from leadscore.models.artifacts import pack_artifact, unpack_artifact
from leadscore.models.holder import LiveModel, TrialMode

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

    def __init__(self, artifacts: Path) -> None:
        self.artifacts = artifacts

    async def register(
        self,
        session: AsyncSession,
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

    async def team_id(self, session: AsyncSession, name: str) -> int:
        """A team's id by name (for the command line)."""
        return await team_id_by_name(session, name)

    async def ensure_champion(self, session: AsyncSession, version: str, actor: str) -> None:
        """The first model a fresh registry sees becomes the global champion."""
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

    async def lease(self, session: AsyncSession, scope: str, job: str, ttl: timedelta) -> bool:
        """One training job per scope across all workers; a crashed job's lease expires."""
        now = datetime.now(UTC)
        return await repo.take_lease(session, scope, job, now, now - ttl)

    async def renew(self, session: AsyncSession, scope: str, job: str) -> bool:
        """Extend a running job's lease; False if it was lost (it expired and was taken)."""
        return await repo.renew_lease(session, scope, job, datetime.now(UTC))

    async def release(self, session: AsyncSession, scope: str, job: str) -> None:
        """End a training job's lease."""
        await repo.release_lease(session, scope, job)

    async def champions(self, session: AsyncSession) -> dict[str, str]:
        """scope → the version that serves it."""
        aliases = await repo.model_aliases(session)
        return {scope: version for (scope, alias), version in aliases.items() if alias == CHAMPION}

    async def aliases(self, session: AsyncSession) -> list[tuple[str, str, str]]:
        """(scope, alias, version) of every champion and challenger (not training leases)."""
        aliases = await repo.model_aliases(session)
        return [
            (scope, alias, version)
            for (scope, alias), version in sorted(aliases.items())
            if alias in (CHAMPION, CHALLENGER)
        ]

    async def plan(self, session: AsyncSession) -> dict[str, ScopePlan]:
        """scope → what it serves: one read of the aliases and the running trials."""
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

    async def trial(self, session: AsyncSession, team_id: int | None) -> dict[str, Any]:
        """A scope's trial: mode, share, the two versions, since when and by whom."""
        scope = scope_of(team_id)
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
        self,
        session: AsyncSession,
        team_id: int,
        champion: str | None = None,
        challenger: str | None = None,
    ) -> tuple[str, str]:
        """The versions a team's comparison is about; unnamed ones are what serves the team
        and its challenger (the team's own, else the global one if the global champion
        serves the team)."""
        if champion is not None and challenger is not None:
            return champion, challenger
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
        self, session: AsyncSession, team_id: int | None, mode: str, share: float, *, actor: str
    ) -> dict[str, Any]:
        """Start, change or end (`off`) a scope's champion/challenger trial, recorded."""
        scope = scope_of(team_id)
        now = datetime.now(UTC)
        aliases = await repo.model_aliases(session)
        champion = _serving(aliases, scope)
        challenger = aliases.get((scope, CHALLENGER))
        if champion is None:
            raise TrialRefusedError("no champion yet: promote one or start the server once")
        if mode == "off":
            if not await repo.end_experiment(session, scope):
                raise TrialRefusedError(f"no trial is running ({scope})")
        elif challenger is None:
            raise TrialRefusedError(f"no challenger to try ({scope}): train or register one first")
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
        return await self.trial(session, team_id)

    async def list(self, session: AsyncSession) -> list[dict[str, Any]]:
        """Every version with its aliases and card summary, newest first."""
        rows = await repo.model_versions(session)
        aliases = await repo.model_aliases(session)
        return [_describe(row, aliases) for row in rows]

    async def show(self, session: AsyncSession, version: str) -> dict[str, Any]:
        """One version: its summary, its whole card, and its scope's alias history."""
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
        self,
        session: AsyncSession,
        version: str,
        *,
        actor: str,
        force: bool,
        detail: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Make a version its scope's champion: forced, or after the gate passed it."""
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

    async def rollback(
        self, session: AsyncSession, team_id: int | None, *, actor: str
    ) -> dict[str, Any]:
        """Serve the champion before the current one again (repeat to go further back)."""
        scope = scope_of(team_id)
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
                f"team {scope} has no champion of its own to roll back: the global model serves it"
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

    async def had_champion(self, session: AsyncSession, team_id: int) -> bool:
        """Whether the team has ever had a champion of its own (promoted, or rolled back)."""
        return await repo.had_champion(session, scope_of(team_id))

    async def load(self, session: AsyncSession, version: str) -> LiveModel:
        """A version ready to serve: unpacked once per host, loaded and checked."""
        directory = self.artifacts / version
        if not (directory / "card.json").is_file():
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
