"""Scoring use cases: one lead, a batch, the latest score and the history of a lead."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.auth.principal import Principal, team_policy
from leadscore.core.cache import Cache, CacheUnavailableError
from leadscore.core.db import after_commit, transaction
from leadscore.core.errors import NotFoundError
from leadscore.core.idempotency import IdempotencyStore, Once
from leadscore.core.metrics import Metrics
from leadscore.core.schemas import validation_detail
from leadscore.core.tables import ScoreRow
from leadscore.core.timestamps import iso_z
from leadscore.core.writer import ScoreWriter
from leadscore.engine.schema import Lead
from leadscore.engine.scorer import ScoreResult
from leadscore.live import events
from leadscore.live.events import EventPublisher
from leadscore.models.holder import Lineup, LiveModel, ModelHolder
from leadscore.models.shadow import ShadowJob, ShadowScorer
from leadscore.scoring import repository as repo
from leadscore.scoring.change import score_change
from leadscore.scoring.repository import ScoreRecord
from leadscore.scoring.schemas import ScoreOptions

LATEST_TTL_SECONDS: Final = 3600.0


def cache_ttl(confidence: float) -> float:
    """Confident scores change less when the lead does: keep them longer."""
    if confidence >= 0.95:
        return 900.0
    if confidence >= 0.85:
        return 600.0
    return 300.0


def _signature(
    canonical: bytes, version: str, options: ScoreOptions, principal: Principal
) -> bytes:
    """What a cached score must match: the lead's exact data, the model, the parts asked for,
    and the team's own thresholds and commission rate."""
    flags = f"{int(options.return_feature_importance)}{int(options.calculate_commission)}"
    team = principal.policy_overrides
    digest = hashlib.sha256(f"{version}:{flags}:{team}:".encode() + canonical).hexdigest()
    return digest[:32].encode()


def _lead_key(team_id: int, lead_id: str) -> str:
    """One cache entry per team and lead: its latest score, reusable while still fresh."""
    return f"lead:{team_id}:{lead_id}"


def _pack(signature: bytes, fresh_until_ms: int, body: bytes) -> bytes:
    return signature + b"|" + str(fresh_until_ms).encode() + b"|" + body


def _unpack(value: bytes) -> tuple[bytes, int, bytes]:
    signature, fresh_until, body = value.split(b"|", 2)
    return signature, int(fresh_until), body


def payload(
    result: ScoreResult, options: ScoreOptions, scored_at: datetime, cache_hit: bool
) -> dict[str, Any]:
    """The contract's response body for one engine result."""
    explain = options.return_feature_importance
    commission = result.commission
    return {
        "success": True,
        "lead_id": result.lead_id,
        "ml_score": result.ml_score,
        "ml_confidence": result.ml_confidence,
        "classification": result.classification,
        "probability_ranges": {
            "conversion": result.conversion,
            "closing": result.closing,
            "timeline_accuracy": result.timeline_accuracy,
        },
        "feature_importance": result.feature_importance if explain else None,
        "reasons": [
            {"feature": r.feature, "group": r.group, "value": r.value, "points": r.points,
             "text": r.text}
            for r in result.reasons
        ]
        if explain
        else None,
        "group_contributions": result.group_points if explain else None,
        "commission": {
            "estimated_commission": commission.estimated_commission,
            "commission_rate": commission.commission_rate,
            "estimated_sale_price": commission.estimated_sale_price,
            "expected_commission": commission.expected_commission,
        }
        if commission is not None
        else None,
        "evidence": result.evidence,
        "qualification": {
            "needed": result.qualification.needed,
            "reasons": list(result.qualification.reasons),
            "ask_next": [
                {"field": q.field, "question": q.question, "score_if_yes": q.score_if_yes,
                 "score_if_no": q.score_if_no}
                for q in result.qualification.ask_next
            ],
        },
        "escalation_recommended": result.escalation_recommended,
        "cache_hit": cache_hit,
        "model_version": result.model_version,
        "scored_at": iso_z(scored_at),
        "processing_time_ms": result.processing_time_ms,
    }  # fmt: skip


@dataclass
class _Computed:
    """Scores computed, not yet stored: their records, cache entries and events."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    records: list[repo.ScoreRecord] = field(default_factory=list)
    writes: list[tuple[str, bytes, float]] = field(default_factory=list)
    events: list[events.Event] = field(default_factory=list)
    shadows: list[ShadowJob] = field(default_factory=list)


#: What else commits with a batch of scores, in their transaction (an escalation opened, a CRM
#: write-back queued): domains that build on scoring register one without scoring knowing them.
ScoreHook = Callable[[AsyncSession, Sequence[repo.ScoreRecord]], Awaitable[None]]


async def save_with_hooks(
    session: AsyncSession, records: Sequence[repo.ScoreRecord], hooks: Sequence[ScoreHook]
) -> None:
    """Store scores and run every hook on them, in the session's unit of work."""
    await repo.save_scores(session, records)
    for hook in hooks:
        await hook(session, records)


@dataclass
class _Scored:
    lead: Lead
    data: dict[str, Any]
    live: LiveModel  # the version that answers
    shadow: LiveModel | None  # the version that scores it unseen, during a trial
    signature: bytes
    body: dict[str, Any] | None = None


class ScoringService:
    """Scores leads with the live model, through the cache, into the history."""

    def __init__(
        self,
        models: ModelHolder,
        cache: Cache,
        writer: ScoreWriter[ScoreRecord],
        metrics: Metrics,
        events: EventPublisher,
        shadow: ShadowScorer,
        batch_chunk: int = 25,
        hooks: Sequence[ScoreHook] = (),
        idempotency: IdempotencyStore | None = None,
    ) -> None:
        self.models = models
        self.cache = cache
        self.idempotency = idempotency or IdempotencyStore(cache)
        self.writer = writer
        self.metrics = metrics
        self.events = events
        self.shadow = shadow
        self.batch_chunk = batch_chunk
        self.hooks = hooks

    async def _cache_get_many(self, keys: list[str]) -> list[bytes | None]:
        """A cache outage is a miss, not an outage of scoring; health reports it."""
        try:
            return await self.cache.get_many(keys)
        except CacheUnavailableError:
            return [None] * len(keys)

    async def _cache_set_many(self, items: list[tuple[str, bytes, float]]) -> bool:
        """A cache outage must not fail a score: the entries are simply not stored (False)."""
        try:
            await self.cache.set_many(items)
        except CacheUnavailableError:
            return False
        return True

    def _prepare(
        self, principal: Principal, lead: Lead, lineup: Lineup, options: ScoreOptions
    ) -> _Scored:
        data = lead.lead_data.model_dump(mode="json")
        canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
        live, shadow = lineup.route(lead.lead_id)
        signature = _signature(canonical, live.version, options, principal)
        return _Scored(lead, data, live, shadow, signature)

    async def score(
        self, principal: Principal, lead: Lead, options: ScoreOptions, once: Once | None = None
    ) -> bytes:
        """Score one lead: cached when the same data was scored by the same model; a retry
        with the request's idempotency key gets the first answer, not a second score."""

        async def act() -> bytes:
            started = time.perf_counter()
            item = self._prepare(principal, lead, self.models.lineup(principal.team_id), options)
            [body] = await self._score_items(principal, [item], options, started)
            return orjson.dumps(body)

        return await self.idempotency.run(principal.team_id, "score", once, act)

    async def _score_items(
        self, principal: Principal, items: Sequence[_Scored], options: ScoreOptions, started: float
    ) -> list[dict[str, Any]]:
        """Score, then persist through the write-behind writer (the request path)."""
        done = await self._compute(principal, items, options, started)
        # One round trip stores every new score as its lead's latest answer, before replying:
        # any worker reads it at once, and it answers repeats while fresh (TTL by confidence).
        cached_latest = await self._cache_set_many(done.writes)
        self._announce(done)
        # Without the cache, another worker finds a score only in the database: wait for its
        # commit (bounded) before answering, so a read right after the answer finds it.
        await self.writer.submit(done.records, wait=not cached_latest)
        return done.bodies

    async def score_in(
        self, session: AsyncSession, principal: Principal, leads: Sequence[Lead]
    ) -> list[dict[str, Any]]:
        """Score leads inside the caller's unit of work (a CRM event, a resolved escalation):
        the scores, and what the hooks write with them (a CRM write-back), commit together;
        they are cached and announced only once committed."""
        started = time.perf_counter()
        options = ScoreOptions(force_refresh=True)
        lineup = self.models.lineup(principal.team_id)
        items = [self._prepare(principal, lead, lineup, options) for lead in leads]
        done = await self._compute(principal, items, options, started)
        await save_with_hooks(session, done.records, self.hooks)

        async def committed() -> None:
            await self._cache_set_many(done.writes)
            self._announce(done)

        after_commit(session, committed)
        return done.bodies

    def _announce(self, done: _Computed) -> None:
        for event in done.events:
            self.events.emit(event)
        if done.shadows:
            self.shadow.submit(done.shadows)

    async def _compute(
        self, principal: Principal, items: Sequence[_Scored], options: ScoreOptions, started: float
    ) -> _Computed:
        now = datetime.now(UTC)
        now_ms = int(now.timestamp() * 1000)
        keys = [_lead_key(principal.team_id, item.lead.lead_id) for item in items]
        team = principal.team_id
        publish_scored = self.events.wants(team, events.EventType.LEAD_SCORED)
        # A refresh reads the cache only for the change since the lead's previous score.
        cached: list[bytes | None] = (
            await self._cache_get_many(keys)
            if publish_scored or not options.force_refresh
            else [None] * len(items)
        )
        misses: dict[str, list[_Scored]] = {}  # by the version that answers
        fresh_until: dict[int, int] = {}
        before: dict[int, bytes] = {}  # the lead's previous score, for the event's change
        for item, entry in zip(items, cached, strict=True):
            if entry is not None:
                signature, valid_until, stored = _unpack(entry)
                if (
                    not options.force_refresh
                    and signature == item.signature
                    and valid_until > now_ms
                ):
                    item.body = orjson.loads(stored) | {"cache_hit": True}
                    continue
                if publish_scored:
                    before[id(item)] = stored
            misses.setdefault(item.live.version, []).append(item)
        for group in misses.values():
            scorer = group[0].live.scorer
            results = scorer.score_many(
                [m.lead for m in group],
                explain=options.return_feature_importance,
                commission=options.calculate_commission,
                policy=team_policy(scorer.policy, principal),
            )
            for item, result in zip(group, results, strict=True):
                item.body = payload(result, options, now, cache_hit=False)
                fresh_until[id(item)] = now_ms + int(cache_ttl(result.ml_confidence) * 1000)
        elapsed = time.perf_counter() - started
        per_lead_ms = round(elapsed * 1000 / len(items), 3)
        done = _Computed()
        publish_escalation = self.events.wants(team, events.EventType.ESCALATION)
        for key, item in zip(keys, items, strict=True):
            body = item.body
            assert body is not None
            body["processing_time_ms"] = per_lead_ms
            if id(item) in fresh_until:
                entry = _pack(item.signature, fresh_until[id(item)], orjson.dumps(body))
                done.writes.append((key, entry, LATEST_TTL_SECONDS))
            done.records.append(
                repo.ScoreRecord(
                    team_id=principal.team_id,
                    lead_id=item.lead.lead_id,
                    lead_data=item.data,
                    model_version=body["model_version"],
                    ml_score=body["ml_score"],
                    classification=body["classification"],
                    escalation_recommended=body["escalation_recommended"],
                    cache_hit=body["cache_hit"],
                    scored_at=now,
                    result=body,
                )
            )
            self.metrics.observe(
                team,
                body["classification"],
                body["cache_hit"],
                body["escalation_recommended"],
                elapsed / len(items),
            )
            done.bodies.append(body)
            name = item.lead.lead_data.name
            if publish_scored:
                previous = before.get(id(item))
                change = score_change(orjson.loads(previous), body) if previous else None
                source, question = item.lead.lead_data.source, repo.top_question(body)
                done.events.append(events.lead_scored(team, name, body, change, source, question))
            if publish_escalation and body["escalation_recommended"]:
                threshold = team_policy(item.live.scorer.policy, principal).escalation_confidence
                done.events.append(events.escalation(team, name, body, threshold))
            if item.shadow is not None:
                done.shadows.append(ShadowJob(team, item.lead, item.shadow, item.live.version, now))
        return done

    async def batch(
        self,
        principal: Principal,
        leads: Sequence[Any],
        options: ScoreOptions,
        once: Once | None = None,
    ) -> bytes:
        """Score up to 100 leads in one vectorised pass; an invalid lead fails alone; a retry
        with the request's idempotency key gets the first answer."""
        return await self.idempotency.run(
            principal.team_id, "batch", once, lambda: self._batch(principal, leads, options)
        )

    async def _batch(
        self, principal: Principal, leads: Sequence[Any], options: ScoreOptions
    ) -> bytes:
        started = time.perf_counter()
        lineup = self.models.lineup(principal.team_id)
        valid: list[tuple[int, _Scored]] = []
        errors: list[dict[str, Any]] = []
        for index, raw in enumerate(leads):
            try:
                lead = Lead.model_validate(raw)
            except ValidationError as exc:
                lead_id = raw.get("lead_id") if isinstance(raw, dict) else None
                errors.append(
                    {
                        "index": index,
                        "lead_id": lead_id if isinstance(lead_id, str) else None,
                        "error": "validation_error",
                        "detail": validation_detail(exc.errors(), root="lead"),
                    }
                )
                continue
            valid.append((index, self._prepare(principal, lead, lineup, options)))
        batch_id = uuid.uuid4().hex
        team = principal.team_id
        total = len(leads)
        self._progress(team, batch_id, 0, total, "started")
        bodies: list[dict[str, Any]] = []
        done = len(errors)  # invalid leads are finished as soon as they are read
        for first in range(0, len(valid), self.batch_chunk):
            chunk = [v for _, v in valid[first : first + self.batch_chunk]]
            bodies += await self._score_items(principal, chunk, options, started)
            done += len(chunk)
            if done < total:
                self._progress(team, batch_id, done, total, "in_progress")
        self._progress(team, batch_id, total, total, "completed")
        results: list[dict[str, Any] | None] = [None] * len(leads)
        for (index, _), body in zip(valid, bodies, strict=True):
            results[index] = body
        counts = {"hot": 0, "warm": 0, "cold": 0}
        for body in bodies:
            counts[body["classification"]] += 1
        mean = round(sum(b["ml_score"] for b in bodies) / len(bodies), 2) if bodies else None
        return orjson.dumps(
            {
                "success": not errors,
                "batch_id": batch_id,
                "total": len(leads),
                "succeeded": len(bodies),
                "failed": len(errors),
                "results": results,
                "errors": errors,
                "summary": counts | {"mean_score": mean},
                "processing_time_ms": round((time.perf_counter() - started) * 1000, 3),
            }
        )

    async def score_leads(
        self, principal: Principal, leads: Sequence[Lead], options: ScoreOptions
    ) -> list[dict[str, Any]]:
        """Score validated leads as one chunk of a longer job (an upload), which reports its
        own progress: stored, cached and announced like any score."""
        started = time.perf_counter()
        lineup = self.models.lineup(principal.team_id)
        items = [self._prepare(principal, lead, lineup, options) for lead in leads]
        return await self._score_items(principal, items, options, started)

    def _progress(self, team: int, batch_id: str, done: int, total: int, status: str) -> None:
        """A batch progress event, when some client listens for them."""
        if self.events.wants(team, events.EventType.BATCH_PROCESSING):
            self.events.emit(events.batch_processing(team, batch_id, done, total, status))

    async def latest(self, session: AsyncSession, principal: Principal, lead_id: str) -> bytes:
        """The most recent score of a lead for the caller's team, from any worker."""
        [cached] = await self._cache_get_many([_lead_key(principal.team_id, lead_id)])
        if cached is not None:
            return _unpack(cached)[2]
        unwritten = self.writer.unwritten(score_key(principal.team_id, lead_id))
        if unwritten is not None:  # acknowledged, not committed yet, and the cache is down
            return orjson.dumps(unwritten.result)
        row = await repo.latest_score(session, principal.team_id, lead_id)
        if row is None:
            raise NotFoundError(f"no score for lead {lead_id!r}")
        return orjson.dumps(row.result)

    async def history(
        self,
        session: AsyncSession,
        principal: Principal,
        lead_id: str,
        limit: int,
        cursor: int | None = None,
    ) -> bytes:
        """Every score of a lead with time, model version and reasons, newest first, a page
        at a time (`next_cursor`: the id of the page's oldest score)."""
        await self.writer.barrier()
        # One more than shown: the oldest entry shown gets its change too, and it says
        # whether another page follows.
        rows = await repo.score_history(session, principal.team_id, lead_id, limit + 1, cursor)
        if not rows and cursor is None:
            raise NotFoundError(f"no score for lead {lead_id!r}")
        next_cursor = str(rows[limit - 1].id) if len(rows) > limit else None
        return orjson.dumps(
            {"lead_id": lead_id, "scores": history_entries(rows, limit), "next_cursor": next_cursor}
        )


def history_entries(rows: Sequence[ScoreRow], limit: int) -> list[dict[str, Any]]:
    """The first `limit` of a lead's scores (newest first), each with its change since the
    next older row (so pass one row more than shown)."""
    previous = [*rows[1:], None]
    return [
        {
            "scored_at": iso_z(row.scored_at),
            "model_version": row.model_version,
            "ml_score": row.ml_score,
            "classification": row.classification,
            "cache_hit": row.cache_hit,
            "reasons": row.result.get("reasons"),
            "change": score_change(before.result, row.result) if before else None,
        }
        for row, before in zip(rows[:limit], previous, strict=False)
    ]


def score_key(team_id: int, lead_id: str) -> tuple[int, str]:
    """What identifies a lead's latest score in the writer's not-yet-committed records."""
    return (team_id, lead_id)


def record_key(record: repo.ScoreRecord) -> tuple[int, str]:
    """The writer's key of a score record."""
    return score_key(record.team_id, record.lead_id)


async def persist_scores(
    sessions: async_sessionmaker[AsyncSession],
    hooks: Sequence[ScoreHook],
    records: Sequence[repo.ScoreRecord],
) -> None:
    """One transaction per batch of scores, with what the hooks add: the writer's unit of
    work."""
    async with transaction(sessions) as session:
        await save_with_hooks(session, records, hooks)
