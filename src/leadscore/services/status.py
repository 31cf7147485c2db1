"""Model status: what is serving, how good it was on held-out data, how it is doing live."""

from __future__ import annotations

import os
from typing import Any

from leadscore.services.metrics import Metrics
from leadscore.services.models import LiveModel
from leadscore.services.writer import ScoreWriter


def model_status(live: LiveModel, metrics: Metrics, writer: ScoreWriter) -> dict[str, Any]:
    """The model card's essentials plus live traffic since the server started."""
    card = live.model.card
    traffic = metrics.summary()
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
        "thresholds": card.get("thresholds"),
        "traffic": traffic,
        "persistence": {
            "pending": writer.pending,
            "written_by_this_worker": writer.written,
            "durable": writer.durable,
        },
    }
