"""Who may change which model: the admin rules over the registry, and the events they announce."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from leadscore.auth.principal import Principal
from leadscore.auth.service import ForbiddenError
from leadscore.core.db import after_commit
from leadscore.core.errors import ModelArtifactError, NotFoundError
from leadscore.live import events
from leadscore.live.events import EventPublisher
from leadscore.models.compare import compare_versions
from leadscore.models.registry import GLOBAL, PromotionRefusedError, Registry
from leadscore.models.watcher import ModelWatcher


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

    async def list(self, session: AsyncSession, team_id: int) -> list[dict[str, Any]]:
        """The global versions and the team's own."""
        return [d for d in await self.registry.list(session) if self._visible(team_id, d)]

    async def show(self, session: AsyncSession, team_id: int, version: str) -> dict[str, Any]:
        """One version, if global or the team's."""
        described = await self.registry.show(session, version)
        if not self._visible(team_id, described):
            raise NotFoundError(f"no model version {version!r}")
        return described

    async def promote(
        self,
        session: AsyncSession,
        principal: Principal,
        version: str,
        *,
        force: bool,
        reason: str | None,
    ) -> dict[str, Any]:
        """Promote, announce it, and serve it on this worker at once (others within seconds)."""
        described = await self.show(session, principal.team_id, version)
        self._may_change(principal, described["team_id"])
        try:
            await self.registry.load(session, version)  # never make champion what cannot serve
        except ModelArtifactError as exc:
            raise PromotionRefusedError(f"{version} cannot be loaded: {exc}") from exc
        detail = None if not force else {"forced": True, "reason": reason}
        actor = f"key {principal.key_id}"
        change = await self.registry.promote(
            session, version, actor=actor, force=force, detail=detail
        )
        self._announce(session, "promoted", change)
        return change

    async def rollback(
        self, session: AsyncSession, principal: Principal, *, team_scope: bool | None
    ) -> dict[str, Any]:
        """Return the global (or the team's) champion to the previous one; unset, the caller's
        own scope: its team's once that has had a champion (never the global model by
        surprise), else the global one when the caller runs it."""
        if team_scope is None:
            team_scope = principal.team_name != self.global_models_team or (
                await self.registry.had_champion(session, principal.team_id)
            )
        team_id = principal.team_id if team_scope else None
        self._may_change(principal, team_id)
        change = await self.registry.rollback(session, team_id, actor=f"key {principal.key_id}")
        self._announce(session, "rolled_back", change)
        return change

    async def trial(
        self, session: AsyncSession, principal: Principal, *, team_scope: bool
    ) -> dict[str, Any]:
        """The global (or the team's) champion/challenger trial."""
        return await self.registry.trial(session, principal.team_id if team_scope else None)

    async def compare(
        self,
        session: AsyncSession,
        principal: Principal,
        champion: str | None,
        challenger: str | None,
    ) -> dict[str, Any]:
        """Both versions on the team's same leads with outcomes (default: its trial's pair)."""
        if self.flush is not None:  # before the first read: SQLite reads from one snapshot
            await self.flush()
        if champion is None or challenger is None:
            default_champion, default_challenger = await self.registry.trial_pair(
                session, principal.team_id
            )
            champion = champion or default_champion
            challenger = challenger or default_challenger
        for version in (champion, challenger):
            await self.show(session, principal.team_id, version)  # 404 unless global or the team's
        return await compare_versions(session, principal.team_id, champion, challenger)

    async def set_trial(
        self,
        session: AsyncSession,
        principal: Principal,
        mode: str,
        share: float,
        *,
        team_scope: bool,
    ) -> dict[str, Any]:
        """Start, change or end a trial; every worker follows within seconds, announced."""
        team_id = principal.team_id if team_scope else None
        self._may_change(principal, team_id)
        trial = await self.registry.set_trial(
            session, team_id, mode, share, actor=f"key {principal.key_id}"
        )
        version = trial["challenger"] or trial["champion"]

        async def announce() -> None:
            await self.watcher.refresh()
            self.publisher.emit(events.model_status("trial", version, trial, team_id))

        after_commit(session, announce)
        return trial

    def _announce(self, session: AsyncSession, status: str, change: dict[str, Any]) -> None:
        """Once committed: serve the change on this worker before the reply, and announce it."""
        scope = change["scope"]
        team_id = None if scope == GLOBAL else int(scope)

        async def announce() -> None:
            await self.watcher.refresh()
            self.publisher.emit(events.model_status(status, change["to_version"], change, team_id))

        after_commit(session, announce)
