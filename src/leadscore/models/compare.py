"""Champion vs challenger on live traffic: both versions' scores of the same leads, judged by
the outcomes that arrived since, with the promotion gate's paired bootstrap."""

from __future__ import annotations

from typing import Any, Final

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from leadscore.engine.gate import GateConfig, paired_comparison
from leadscore.engine.metrics import reliability, summary
from leadscore.models import repository as repo

COMPARE_WINDOW: Final = 50_000  # the newest scores read (both versions, returned or shadow)


def _version(version: str, labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    report: dict[str, Any] = {"version": version}
    if len(labels) and labels.min() != labels.max():
        report |= summary(labels, probs) | {"reliability": reliability(labels, probs)}
    return report | {"n": len(labels)}


async def compare_versions(
    session: AsyncSession,
    team_id: int,
    champion: str,
    challenger: str,
    config: GateConfig | None = None,
    window: int = COMPARE_WINDOW,
) -> dict[str, Any]:
    """Each version's first score of every lead both scored before its outcome, compared.

    A lead counts once per version (its first score: what was known when it arrived), and
    only when both versions scored it, so the two columns describe exactly the same leads.
    """
    rows = await repo.scores_before_outcomes(session, team_id, [champion, challenger], window)
    first: dict[tuple[str, str], float] = {}
    converted: dict[str, bool] = {}
    for lead_id, version, score, hit in rows:  # newest first: the last one seen is the first
        first[(lead_id, version)] = score / 100.0
        converted[lead_id] = hit
    both = sorted(
        lead for lead in converted if (lead, champion) in first and (lead, challenger) in first
    )
    y = np.array([1.0 if converted[lead] else 0.0 for lead in both])
    p_old = np.array([first[(lead, champion)] for lead in both])
    p_new = np.array([first[(lead, challenger)] for lead in both])
    only = {
        version: sum(1 for lead in converted if (lead, version) in first) - len(both)
        for version in (champion, challenger)
    }
    config = config or GateConfig()
    verdict = paired_comparison(y, p_new, p_old, config)
    return {
        "team_id": team_id,
        "leads": len(both),
        "converted": int(y.sum()),
        "champion": _version(champion, y, p_old),
        "challenger": _version(challenger, y, p_new),
        "scored_by_one_only": only,
        "auc_difference_ci": verdict.get("auc_difference_ci"),
        "brier_difference_ci": verdict.get("brier_difference_ci"),
        "challenger_not_worse": verdict["passed"],
        "reason": verdict["reason"],
        "margins": {"auc": config.margin_auc, "brier": config.margin_brier,
                    "confidence": config.confidence},
    }  # fmt: skip
