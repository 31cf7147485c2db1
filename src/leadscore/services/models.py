"""The live model behind one reference that is swapped atomically (hot swap without restart)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from leadscore.engine.model import LeadModel
from leadscore.engine.scorer import Scorer


@dataclass(frozen=True)
class LiveModel:
    """A model and its scorer, read together: a request never mixes two versions."""

    model: LeadModel
    scorer: Scorer
    path: Path

    @property
    def version(self) -> str:
        """The model's content-hash version."""
        return self.model.version


class ModelHolder:
    """Holds the serving models: the global champion and any team's own champion.

    A request takes its model once (`for_team`) and uses only that: swapping replaces whole
    references, so no request is ever scored half by one version and half by another.
    """

    def __init__(self, live: LiveModel) -> None:
        self._live = live
        self._teams: dict[int, LiveModel] = {}

    @property
    def current(self) -> LiveModel:
        """The global champion: every team without a model of its own uses it."""
        return self._live

    def for_team(self, team_id: int) -> LiveModel:
        """The model that scores this team's leads."""
        return self._teams.get(team_id, self._live)

    def by_scope(self, scope: str) -> LiveModel | None:
        """The model serving a registry scope ("global" or a team id), if any."""
        return self._live if scope == "global" else self._teams.get(int(scope))

    def versions(self) -> dict[str, str]:
        """scope → version, in the registry's terms."""
        return {"global": self._live.version} | {str(t): m.version for t, m in self._teams.items()}

    def install(self, live: LiveModel, teams: dict[int, LiveModel]) -> None:
        """Serve these models from the next request on."""
        self._live, self._teams = live, dict(teams)
