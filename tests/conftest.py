"""Shared fixtures: generated leads and models trained on them, built once per test session."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

from collections.abc import AsyncIterator
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.core.db import create_engine, session_factory
from leadscore.core.migrate import upgrade
from leadscore.engine.attributes import AttributeSpec
from leadscore.engine.model import LeadModel, ModelConfig, train
from leadscore.engine.synthetic import generate
from leadscore.engine.training import TrainingInput

ROOT = Path(__file__).resolve().parents[1]
# The UCI Bank Marketing file ships with the example mapping (examples/data/, CC BY 4.0).
BANK_MARKETING = ROOT / "examples" / "data" / "bank-marketing" / "bank-additional-full.csv"


@pytest.fixture(scope="session")
def train_frame() -> pl.DataFrame:
    """Generated history to train on."""
    return generate(60_000, seed=11)


@pytest.fixture(scope="session")
def holdout_frame() -> pl.DataFrame:
    """Fresh generated leads the model never saw, with the oracle's probabilities."""
    return generate(40_000, seed=12)


@pytest.fixture(scope="session")
def model(train_frame: pl.DataFrame) -> LeadModel:
    """The default configuration trained on the generated history."""
    return train(TrainingInput.from_frame(train_frame, AttributeSpec()), ModelConfig(seed=11))


@pytest.fixture(scope="session")
def model_dir(model: LeadModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained model saved as an artifact directory."""
    return model.save(tmp_path_factory.mktemp("models") / "synthetic")


@pytest.fixture(scope="session")
def other_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, different model (other data and seed): a candidate to promote."""
    frame = generate(8_000, seed=21)
    other = train(TrainingInput.from_frame(frame, AttributeSpec()), ModelConfig(seed=21))
    return other.save(tmp_path_factory.mktemp("models") / "other")


@pytest.fixture
def database(tmp_path: Path) -> str:
    """A migrated SQLite file (migrations run their own event loop: outside any test's)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'leadscore.db'}"
    upgrade(url)
    return url


@pytest.fixture
async def sessions(database: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on that database, for tests of services and repositories."""
    engine = create_engine(database)
    yield session_factory(engine)
    await engine.dispose()
