"""Model status: what is serving, how good it was on held-out data, how it is doing live."""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any, Final

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from leadscore.auth.principal import Principal, team_policy
from leadscore.core.errors import NotFoundError
from leadscore.core.metrics import Metrics
from leadscore.core.writer import ScoreWriter
from leadscore.engine.metrics import reliability, summary
from leadscore.models import repository as repo
from leadscore.models.drift import DriftService
from leadscore.models.holder import Lineup
from leadscore.models.shadow import ShadowScorer

QUALITY_WINDOW: Final = 5_000
MIN_QUALITY_LEADS: Final = 30


def trial_status(lineup: Lineup, shadow: ShadowScorer) -> dict[str, Any]:
    """The champion/challenger trial serving the team, with this worker's shadow counts."""
    trial = lineup.trial
    if trial is None:
        return {"mode": "off"}
    return {
        "mode": trial.mode,
        "share": trial.share,
        "champion": lineup.champion.version,
        "challenger": trial.challenger.version,
        "shadow_scores": {
            "stored_by_this_worker": shadow.scored,
            "pending": shadow.pending,
            "dropped": shadow.dropped,
        },
    }


def model_status(
    lineup: Lineup, metrics: Metrics, writer: ScoreWriter[Any], principal: Principal
) -> dict[str, Any]:
    """The model card's essentials plus the team's live traffic since the server started;
    the thresholds are those the team's scores use (its own settings over the card's)."""
    live = lineup.champion
    card = live.model.card_
    traffic = metrics.summary(principal.team_id)
    thresholds = asdict(team_policy(live.scorer.policy, principal))
    return {
        "model_loaded": True,
        "worker_pid": os.getpid(),
        "version": live.version,
        "trained_at": card.get("created_at"),
        "algorithm": card.get("algorithm"),
        "feature_spec": card.get("feature_spec"),
        "features": card.get("features"),
        "training_data": card.get("training_data"),
        "metrics": card.get("metrics"),
        "thresholds": thresholds,
        "traffic": traffic,
        "persistence": {
            "pending": writer.pending,
            "written_by_this_worker": writer.written,
            "rejected_by_this_worker": writer.rejected,
            "retries_by_this_worker": writer.failures,
            "database_down": writer.database.is_down,
            "durable": writer.durable,
        },
    }


async def live_quality(
    session: AsyncSession, team_id: int, window: int = QUALITY_WINDOW
) -> dict[str, Any]:
    """How each version's scores held up against the outcomes that have arrived since:
    AUC, Brier and reliability bins over the team's latest scored leads with outcomes."""
    rows = await repo.scored_outcomes(session, team_id, window)
    by_version: dict[str, tuple[list[float], list[float]]] = {}
    for version, score, converted in rows:
        labels, probs = by_version.setdefault(version, ([], []))
        labels.append(1.0 if converted else 0.0)
        probs.append(score / 100.0)
    report: dict[str, Any] = {}
    for version, (labels, probs) in by_version.items():
        y, p = np.array(labels), np.array(probs)
        if len(y) < MIN_QUALITY_LEADS or y.min() == y.max():
            report[version] = {"n": len(y), "detail": "too few outcomes of both kinds yet"}
            continue
        report[version] = {**summary(y, p), "n": len(y), "reliability": reliability(y, p)}
    return {"window": window, "versions": report}


async def team_model_status(
    lineup: Lineup,
    metrics: Metrics,
    writer: ScoreWriter[Any],
    shadow: ShadowScorer,
    session: AsyncSession,
    principal: Principal,
) -> dict[str, Any]:
    """The serving model's status for a team, with its live quality as outcomes arrive."""
    await writer.barrier()
    quality = await live_quality(session, principal.team_id)
    return model_status(lineup, metrics, writer, principal) | {
        "live_quality": quality,
        "trial": trial_status(lineup, shadow),
    }


async def team_model_health(
    lineup: Lineup,
    metrics: Metrics,
    writer: ScoreWriter[Any],
    shadow: ShadowScorer,
    drift: DriftService,
    session: AsyncSession,
    principal: Principal,
) -> dict[str, Any]:
    """The team's model status with its drift report; a model without a training reference
    has no drift to show, which the report says rather than failing."""
    status = await team_model_status(lineup, metrics, writer, shadow, session, principal)
    try:
        report = await drift.report(session, principal.team_id)
    except NotFoundError as exc:
        report = {"detail": str(exc)}
    return status | {"drift": report}
