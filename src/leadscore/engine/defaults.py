"""The out-of-the-box model: trained on the documented generator at first use, then cached."""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import Final

from leadscore.engine.attributes import AttributeSpec
from leadscore.engine.features import spec_hash
from leadscore.engine.model import LeadModel, ModelConfig, train
from leadscore.engine.training import TrainingInput

DEFAULT_TRAINING_LEADS: Final = 60_000
DEFAULT_SEED: Final = 20_260_124
#: Bump when the generator's world changes (2: observability by source; 3: gaps neutral in
#: probability, bare contacts), so a home that cached a model of the old world builds anew.
GENERATOR_WORLD: Final = 3


def default_model_dir(home: Path) -> Path:
    """One default artifact per feature spec and generator world: never a stale model."""
    return home / "models" / f"default-{spec_hash()}-w{GENERATOR_WORLD}"


def build_default_model(num_threads: int = 2) -> LeadModel:
    """Train the default model on generated leads with a fixed seed (deterministic)."""
    from leadscore.engine.synthetic import generate  # polars: only when building

    frame = generate(DEFAULT_TRAINING_LEADS, seed=DEFAULT_SEED)
    config = ModelConfig(num_threads=num_threads, seed=DEFAULT_SEED)
    return train(
        TrainingInput.from_frame(frame, AttributeSpec()),
        config,
        data_description=f"synthetic generator, {DEFAULT_TRAINING_LEADS} leads, "
        f"seed {DEFAULT_SEED}",
    )


def load_or_build_default(home: Path, num_threads: int = 2) -> LeadModel:
    """Load the cached default model, building it once under a lock shared by all workers."""
    directory = default_model_dir(home)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with (directory.parent / ".default.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (directory / "card.json").is_file():
            build_default_model(num_threads).save(directory)
    return LeadModel.load(directory)
