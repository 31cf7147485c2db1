"""Drift monitoring: the team's recently scored leads against its model's training leads."""

from __future__ import annotations

import asyncio
from typing import Any, Final

import numpy as np
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from leadscore.core.errors import NotFoundError
from leadscore.core.writer import ScoreWriter
from leadscore.engine.attributes import attributes_from_leads
from leadscore.engine.drift import DEFAULT_THRESHOLD, drift_report
from leadscore.engine.model import LeadModel
from leadscore.engine.raw import RawBatch, raw_from_leads
from leadscore.engine.schema import LeadData
from leadscore.live import events
from leadscore.live.events import EventPublisher
from leadscore.models import repository as repo
from leadscore.models.holder import ModelHolder

MIN_LIVE_LEADS: Final = 200


def _live_report(
    model: LeadModel, rows: list[tuple[dict[str, Any], Any]], threshold: float
) -> dict[str, Any]:
    """Each lead's quantities as of when it was last scored, then the PSI report."""
    leads = [LeadData.model_validate_json(orjson.dumps(data)) for data, _ in rows]
    batches = [
        raw_from_leads([lead], as_of=when) for lead, (_, when) in zip(leads, rows, strict=True)
    ]
    raw = RawBatch(np.vstack([b.values for b in batches]), [s for b in batches for s in b.sources])
    attrs = attributes_from_leads(leads, model.attributes_)
    return drift_report(model, model.card_["reference"], raw, attrs, threshold)


class DriftService:
    """PSI per feature and for the score; a `drift_alert` event when a team starts drifting."""

    def __init__(
        self,
        writer: ScoreWriter[Any],
        models: ModelHolder,
        publisher: EventPublisher,
        window: int = 5_000,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        self.writer = writer
        self.models = models
        self.publisher = publisher
        self.window = window
        self.threshold = threshold
        self._alerting: set[int] = set()

    async def report(self, session: AsyncSession, team_id: int) -> dict[str, Any]:
        """The drift of the team's last `window` scored leads from its model's reference."""
        live = self.models.for_team(team_id)
        if "reference" not in live.model.card_:
            raise NotFoundError(
                f"model {live.version} has no training reference (trained before drift "
                "monitoring): retrain or promote a newer model"
            )
        await self.writer.barrier()  # leads scored a moment ago count too
        rows = await repo.recent_leads(session, team_id, self.window)
        base = {"model_version": live.version, "window": self.window}
        if len(rows) < MIN_LIVE_LEADS:
            return base | {
                "rows": len(rows), "alert": False,
                "detail": f"fewer than {MIN_LIVE_LEADS} scored leads: nothing to compare yet",
            }  # fmt: skip
        report = await asyncio.to_thread(_live_report, live.model, rows, self.threshold)
        if report["alert"] and team_id not in self._alerting:
            self._alerting.add(team_id)
            detail = {"team_id": team_id, "score_psi": report["score_psi"],
                      "drifted_features": report["drifted_features"]}  # fmt: skip
            self.publisher.emit(
                events.model_status("drift_alert", live.version, detail, team_id=team_id)
            )
        elif not report["alert"]:
            self._alerting.discard(team_id)
        return base | report
