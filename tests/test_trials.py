"""Champion/challenger trials: routing by lead_id hash, shadow scoring, and the comparison of
both versions on the same leads (a real SQLite database)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.auth import repository as auth_repo
from leadscore.auth.principal import Principal
from leadscore.core.bus import MemoryBus
from leadscore.core.cache import MemoryCache
from leadscore.core.db import transaction
from leadscore.core.metrics import Metrics
from leadscore.engine.model import LeadModel
from leadscore.engine.schema import Lead
from leadscore.engine.scorer import Scorer
from leadscore.live.events import EventPublisher
from leadscore.models import repository as models_repo
from leadscore.models.compare import compare_versions
from leadscore.models.holder import Lineup, LiveModel, ModelHolder, Trial
from leadscore.models.repository import ShadowRecord
from leadscore.models.shadow import ShadowJob, ShadowScorer
from leadscore.outcomes import repository as outcomes_repo
from leadscore.outcomes.repository import OutcomeRecord
from leadscore.scoring import repository as scoring_repo
from leadscore.scoring.repository import ScoreRecord
from leadscore.scoring.schemas import ScoreOptions
from leadscore.scoring.service import ScoringService

from .api.conftest import batch_lead


@pytest.fixture(scope="module")
def champion(model: LeadModel) -> LiveModel:
    return LiveModel(model, Scorer(model), Path("."))


@pytest.fixture(scope="module")
def challenger(other_model_dir: Path) -> LiveModel:
    other = LeadModel.load(other_model_dir)
    return LiveModel(other, Scorer(other), other_model_dir)


def test_shadow_mode_answers_with_the_champion_and_shadows_the_challenger(
    champion: LiveModel, challenger: LiveModel
) -> None:
    lineup = Lineup(champion, Trial(challenger, "shadow"))
    for i in range(200):
        assert lineup.route(f"lead_{i}") == (champion, challenger)
    assert Lineup(champion).route("lead_1") == (champion, None)


def test_split_mode_gives_the_challenger_a_stable_share_of_leads(
    champion: LiveModel, challenger: LiveModel
) -> None:
    lineup = Lineup(champion, Trial(challenger, "split", 0.3))
    routes = {f"lead_{i}": lineup.route(f"lead_{i}") for i in range(20_000)}
    to_challenger = {lead for lead, (answers, _) in routes.items() if answers is challenger}
    assert abs(len(to_challenger) / len(routes) - 0.3) < 0.015
    for lead, (answers, shadow) in routes.items():
        assert shadow is (champion if answers is challenger else challenger)  # the other, unseen
        assert lineup.route(lead) == (answers, shadow)  # stable: same lead, same answer
    # A later challenger is tried on a fresh sample, not the same leads again.
    swapped = Lineup(challenger, Trial(champion, "split", 0.3))
    again = {lead for lead in routes if swapped.route(lead)[0] is champion}
    assert len(again & to_challenger) < 0.5 * len(to_challenger)


class _Recorder:
    def __init__(self) -> None:
        self.records: list[ShadowRecord] = []
        self.scores: list[ScoreRecord] = []

    async def persist(self, records: Sequence[ShadowRecord]) -> None:
        self.records += records

    async def submit(self, records: Sequence[ScoreRecord], *, wait: bool = False) -> None:
        self.scores += records


async def test_a_split_trial_answers_each_lead_with_its_version_and_logs_the_other(
    champion: LiveModel, challenger: LiveModel
) -> None:
    recorder = _Recorder()
    shadow = ShadowScorer(recorder.persist)
    holder = ModelHolder(champion)
    lineup = Lineup(champion, Trial(challenger, "split", 0.5))
    holder.install(Lineup(champion), {7: lineup})  # team 7 runs a trial, the others do not
    service = ScoringService(
        holder, MemoryCache(), recorder, Metrics.create(),  # type: ignore[arg-type]
        EventPublisher(MemoryBus()), shadow,
    )  # fmt: skip
    leads = [batch_lead(f"trial_{i}") for i in range(60)]
    trial_team = Principal(1, 7, "globex", "agent")
    batch = orjson.loads(await service.batch(trial_team, leads, ScoreOptions()))
    assert batch["succeeded"] == len(leads)
    one = orjson.loads(
        await service.score(trial_team, Lead.model_validate(leads[0]), ScoreOptions())
    )
    assert one["cache_hit"] is True  # the batch's answer, from the version that answers it
    other = orjson.loads(
        await service.score(Principal(2, 8, "acme", "agent"), Lead.model_validate(leads[0]),
                            ScoreOptions())
    )  # fmt: skip
    assert other["model_version"] == champion.version
    served = {r["lead_id"]: r["model_version"] for r in batch["results"]}
    assert served[leads[0]["lead_id"]] == one["model_version"]
    for lead_id, version in served.items():
        assert version == lineup.route(lead_id)[0].version
    assert set(served.values()) == {champion.version, challenger.version}
    await shadow.flush()
    shadowed = recorder.records
    # Every lead of the batch once, and the repeat of the first (a cache hit) again.
    assert sorted(r.lead_id for r in shadowed) == sorted([*served, leads[0]["lead_id"]])
    direct = {
        version: {r.lead_id: r.ml_score for r in live.scorer.score_many(
            [Lead.model_validate(x) for x in leads], explain=False)}
        for version, live in ((champion.version, champion), (challenger.version, challenger))
    }  # fmt: skip
    for record in shadowed:
        assert record.served_version == served[record.lead_id] != record.model_version
        assert record.ml_score == pytest.approx(direct[record.model_version][record.lead_id],
                                                abs=0.02)  # fmt: skip
    assert all(r.team_id == 7 for r in recorder.records)  # the other team runs no trial


async def test_shadow_jobs_beyond_the_limit_are_dropped_and_counted(champion: LiveModel) -> None:
    recorder = _Recorder()
    shadow = ShadowScorer(recorder.persist, max_pending=5)
    now = datetime.now(UTC)
    jobs = [
        ShadowJob(1, Lead.model_validate(batch_lead(f"s_{i}")), champion, "v", now)
        for i in range(8)
    ]
    shadow.submit(jobs)
    assert (shadow.pending, shadow.dropped) == (5, 3)
    await shadow.close()
    assert [r.lead_id for r in recorder.records] == [f"s_{i}" for i in range(5)]
    assert shadow.scored == 5


async def test_the_comparison_judges_both_versions_on_the_same_leads(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    start = datetime(2026, 10, 1, tzinfo=UTC)
    rng = np.random.default_rng(5)
    converted = rng.random(400) < 0.3
    async with sessions() as session, session.begin():
        team = await auth_repo.create_team(session, "globex", start)
        scores, shadows, outcomes = [], [], []
        for i, hit in enumerate(converted):
            lead_id, at = f"c_{i}", start + timedelta(minutes=i)
            good = 80.0 if hit else 20.0  # the challenger ranks perfectly ...
            noise = float(rng.uniform(0, 100))  # ... the champion at random
            scores.append(ScoreRecord(team.id, lead_id, {"name": lead_id}, "champ", noise, "warm",
                                      False, False, at, {}))  # fmt: skip
            shadows.append(ShadowRecord(team.id, lead_id, "chall", "champ", good, at))
            # A later score, after the outcome was known, must not count.
            scores.append(ScoreRecord(team.id, lead_id, {"name": lead_id}, "champ", good, "warm",
                                      False, False, at + timedelta(days=3), {}))  # fmt: skip
            outcome = "converted" if hit else "lost"
            outcomes.append(OutcomeRecord(team.id, lead_id, outcome, at + timedelta(days=1),
                                               None, None, at))  # fmt: skip
        # A lead only the champion scored is reported, not compared.
        scores.append(ScoreRecord(team.id, "solo", {"name": "solo"}, "champ", 50.0, "warm",
                                  False, False, start, {}))  # fmt: skip
        outcomes.append(OutcomeRecord(team.id, "solo", "lost", start + timedelta(days=1),
                                           None, None, start))  # fmt: skip
        await scoring_repo.save_scores(session, scores)
        await models_repo.save_shadow_scores(session, shadows)
        await outcomes_repo.save_outcomes(session, outcomes)
    async with transaction(sessions) as session:
        report = await compare_versions(session, team.id, "champ", "chall")
    assert report["leads"] == 400
    assert report["converted"] == int(converted.sum())
    assert report["scored_by_one_only"] == {"champ": 1, "chall": 0}
    assert report["challenger"]["auc"] == 1.0
    assert 0.4 < report["champion"]["auc"] < 0.6  # its later, perfect scores were not used
    assert report["challenger_not_worse"] is True
    low, high = report["auc_difference_ci"]
    assert 0.3 < low <= high
    assert report["champion"]["n"] == report["challenger"]["n"] == 400
    async with transaction(sessions) as session:
        reverse = await compare_versions(session, team.id, "chall", "champ")
    assert reverse["challenger_not_worse"] is False  # a worse challenger is called worse
    assert "AUC may be lower" in reverse["reason"]
