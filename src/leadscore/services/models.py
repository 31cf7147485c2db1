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
    """Holds the serving model; a request takes `current` once and uses only that."""

    def __init__(self, live: LiveModel) -> None:
        self._live = live

    @property
    def current(self) -> LiveModel:
        """The model serving now."""
        return self._live

    def swap(self, live: LiveModel) -> LiveModel:
        """Serve another model from the next request on; returns the one replaced."""
        previous, self._live = self._live, live
        return previous
