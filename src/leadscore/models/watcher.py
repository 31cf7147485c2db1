"""Each worker serves the registry's champions: checked every second, swapped in whole."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.core.db import is_connection_error, transaction
from leadscore.core.lifecycle import Background, Periodic
from leadscore.core.logs import DependencyLog
from leadscore.live import events
from leadscore.live.events import EventPublisher
from leadscore.models.holder import Lineup, LiveModel, ModelHolder, Trial
from leadscore.models.registry import GLOBAL, Registry, ScopePlan

log = logging.getLogger(__name__)


class ModelWatcher(Background):
    """Makes this worker serve the registry's champions, checked every `interval` seconds.

    A new champion is loaded beside the serving one and swapped in whole: a request that took
    the old one finishes with it. Promotion and rollback reach every worker within seconds.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        registry: Registry,
        holder: ModelHolder,
        publisher: EventPublisher,
        worker: str,
        interval_seconds: float = 1.0,
    ) -> None:
        self.sessions = sessions
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
        async with transaction(self.sessions) as session:
            plan = await self.registry.plan(session)
        if plan == self._installed:
            return False
        known = self.holder.loaded()

        async def get(version: str | None) -> LiveModel | None:
            if version is None or version in self._broken:
                return None
            if version not in known:
                try:
                    async with transaction(self.sessions) as session:
                        known[version] = await self.registry.load(session, version)
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
