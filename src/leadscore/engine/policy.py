"""How a team's model is kept current: retrain or recalibrate, then gate against the champion.

One implementation: the service's training jobs (`models.training`) and the backtest
(`engine.backtest`) both call these, so a backtest replays what the service would have done.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from leadscore.engine.attributes import AttributeSpec
from leadscore.engine.gate import GateConfig, promotion_gate, recalibrate, time_holdout
from leadscore.engine.model import LeadModel, ModelConfig, train
from leadscore.engine.training import TrainingInput

#: Recalibration follows the base rate of now: it refits on this many of the newest leads
#: (all of them below that), so a market that turned is not averaged with the years before.
RECALIBRATION_RECENT_LEADS: Final = 2000


def older_and_newest(data: TrainingInput, share: float) -> tuple[TrainingInput, TrainingInput]:
    """The leads a challenger learns from, and the newest ones it is judged on."""
    newest = time_holdout(data, share)
    order = np.argsort(data.created_us, kind="stable")
    return data.take(order[: len(order) - len(newest.created_us)]), newest


def gated(model: LeadModel, champion: LeadModel, holdout: TrainingInput, gate: GateConfig) -> None:
    """Record in the challenger's card whether it may replace the champion, and why."""
    model.card_["gate"] = promotion_gate(model, champion, holdout, gate) | {
        "against": champion.version_
    }


def retrained(
    data: TrainingInput,
    config: ModelConfig,
    gate: GateConfig,
    champion: LeadModel,
    about: str,
    attributes: AttributeSpec | None = None,
) -> LeadModel:
    """Train on all but the newest leads, then judge against the champion on those."""
    older, newest = older_and_newest(data, gate.holdout_share)
    model = train(older, config, attributes, data_description=about)
    gated(model, champion, newest, gate)
    return model


def recalibrated(data: TrainingInput, champion: LeadModel, gate: GateConfig) -> LeadModel:
    """Refit the champion's calibration on the recent leads but the newest, gate it on those."""
    order = np.argsort(data.created_us, kind="stable")
    recent = data.take(order[-RECALIBRATION_RECENT_LEADS:])
    older, newest = older_and_newest(recent, gate.holdout_share)
    model = recalibrate(champion, older)
    gated(model, champion, newest, gate)
    return model


def passed(model: LeadModel) -> bool:
    """Whether the challenger's gate let it replace the champion."""
    return bool(model.card_.get("gate", {}).get("passed"))
