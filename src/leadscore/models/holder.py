"""The live models behind one reference that is swapped atomically (hot swap without restart),
and the champion/challenger trial that decides which of two versions answers a lead."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from leadscore.engine.model import LeadModel
from leadscore.engine.scorer import Scorer

TrialMode = Literal["shadow", "split"]
_HASH_SPACE: Final = float(2**64)


@dataclass(frozen=True)
class LiveModel:
    """A model and its scorer, read together: a request never mixes two versions."""

    model: LeadModel
    scorer: Scorer
    path: Path

    @property
    def version(self) -> str:
        """The model's content-hash version."""
        return self.model.version_


def lead_share(salt: str, lead_id: str) -> float:
    """A lead's stable place in [0, 1): the same on every worker, restart and run."""
    digest = hashlib.blake2b(f"{salt}:{lead_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _HASH_SPACE


@dataclass(frozen=True)
class Trial:
    """A challenger on live traffic: in the shadow of every score, or answering a share."""

    challenger: LiveModel
    mode: TrialMode
    share: float = 0.0

    def answers(self, lead_id: str) -> bool:
        """Split mode: whether the challenger answers this lead (salted by its version, so
        each new challenger is tried on a fresh sample of leads)."""
        return self.mode == "split" and lead_share(self.challenger.version, lead_id) < self.share


@dataclass(frozen=True)
class Lineup:
    """What scores one scope's leads: the champion, and a challenger under trial if any."""

    champion: LiveModel
    trial: Trial | None = None

    @property
    def key(self) -> tuple[object, ...]:
        """What this lineup serves, comparable: two equal keys score every lead alike."""
        trial = self.trial
        if trial is None:
            return (self.champion.version,)
        return (self.champion.version, trial.challenger.version, trial.mode, trial.share)

    def route(self, lead_id: str) -> tuple[LiveModel, LiveModel | None]:
        """(the version that answers, the version that scores in its shadow)."""
        trial = self.trial
        if trial is None:
            return self.champion, None
        if trial.answers(lead_id):
            return trial.challenger, self.champion
        return self.champion, trial.challenger


class ModelHolder:
    """Holds the serving lineups: the global one and any team's own.

    A request takes its lineup once (`lineup`) and uses only that: swapping replaces whole
    references, so no request is ever scored half by one version and half by another.
    """

    def __init__(self, live: LiveModel) -> None:
        self._global = Lineup(live)
        self._teams: dict[int, Lineup] = {}

    @property
    def current(self) -> LiveModel:
        """The global champion: every team without a model of its own uses it."""
        return self._global.champion

    def lineup(self, team_id: int) -> Lineup:
        """What scores this team's leads."""
        return self._teams.get(team_id, self._global)

    def for_team(self, team_id: int) -> LiveModel:
        """The champion that scores this team's leads."""
        return self.lineup(team_id).champion

    def loaded(self) -> dict[str, LiveModel]:
        """Every model held, by version: a swap reuses them instead of loading again."""
        held: dict[str, LiveModel] = {}
        for lineup in (self._global, *self._teams.values()):
            held[lineup.champion.version] = lineup.champion
            if lineup.trial is not None:
                held[lineup.trial.challenger.version] = lineup.trial.challenger
        return held

    def state(self) -> dict[int | None, tuple[object, ...]]:
        """Every lineup's key, by team (None: the global lineup)."""
        return {None: self._global.key} | {t: lineup.key for t, lineup in self._teams.items()}

    def install(self, lineup: Lineup, teams: dict[int, Lineup]) -> None:
        """Serve these lineups from the next request on."""
        self._global, self._teams = lineup, dict(teams)
