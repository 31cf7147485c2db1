"""A model on disk: boosters, metadata and the card, written atomically and verified on load.

The version is a hash of the artifact's content (everything but the card), so the same model
always has the same version and an artifact altered on disk is refused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import lightgbm as lgb

from leadscore.engine.errors import ModelArtifactError
from leadscore.engine.features import spec_hash
from leadscore.engine.linear import LinearHead
from leadscore.engine.training import Head

#: A head's file: LightGBM's text model, or a linear head's JSON.
BOOSTER_SUFFIX = ".lgb"
LINEAR_SUFFIX = ".linear.json"


def content_hash(directory: Path) -> str:
    """The version of the artifact in `directory`: a hash of every file but the card."""
    digest = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        if path.name != "card.json":
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def write_artifact(
    directory: Path, boosters: dict[str, Head], meta: dict[str, Any], card: dict[str, Any]
) -> str:
    """Write the artifact atomically (a reader never sees a half-written model); its version."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=directory.parent))
    for head, booster in boosters.items():
        suffix = LINEAR_SUFFIX if isinstance(booster, LinearHead) else BOOSTER_SUFFIX
        booster.save_model(str(staging / f"{head}{suffix}"))
    (staging / "meta.json").write_text(json.dumps(meta, sort_keys=True))
    version = content_hash(staging)
    card["version"] = version
    (staging / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True))
    if directory.exists():
        shutil.rmtree(directory)
    staging.rename(directory)
    return version


def read_artifact(
    directory: Path,
) -> tuple[dict[str, Head], dict[str, Any], dict[str, Any]]:
    """Boosters, metadata and card; refuses an artifact of another feature spec or altered."""
    card_path = directory / "card.json"
    if not card_path.is_file():
        raise ModelArtifactError(f"{directory} is not a model artifact (no card.json)")
    card: dict[str, Any] = json.loads(card_path.read_text())
    if card.get("feature_spec") != spec_hash():
        raise ModelArtifactError(
            f"model {directory} was trained on feature spec {card.get('feature_spec')}, "
            f"this build computes {spec_hash()}: retrain it"
        )
    if content_hash(directory) != card.get("version"):
        raise ModelArtifactError(f"model {directory} does not match its card's version hash")
    meta: dict[str, Any] = json.loads((directory / "meta.json").read_text())
    boosters = {head: _read_head(directory, head) for head in meta["calibrators"]}
    return boosters, meta, card


def _read_head(directory: Path, head: str) -> Head:
    linear = directory / f"{head}{LINEAR_SUFFIX}"
    if linear.is_file():
        return LinearHead.load(linear)
    return lgb.Booster(model_file=str(directory / f"{head}{BOOSTER_SUFFIX}"))
