"""The service's Prometheus metrics, correct across workers (multiprocess mode), and the
performance summaries derived from the very same counters, so the two never disagree.

Counters and histograms live in PROMETHEUS_MULTIPROC_DIR when several workers serve (each
worker's files summed at scrape time; live gauges summed over the workers alive); what the
database already holds for every worker (webhook backlogs, the models serving) is sampled
from it when /metrics is scraped instead, by whichever worker answers.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS: Final = (
    0.0002, 0.0003, 0.0004, 0.0005, 0.0006, 0.0007, 0.0008, 0.0009, 0.001, 0.0015, 0.002,
    0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
#: Whole requests, HTTP included: a score is ~1 ms, a batch or an upload far longer.
HTTP_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
TRAINING_BUCKETS: Final = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
#: A scrape-time sample (webhook backlog, models serving) waits this long for the database.
SAMPLE_TIMEOUT_SECONDS: Final = 2.0
TARGET_SECONDS: Final = 0.001
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
#: Per-team latency histograms: they feed each team's own summary and stay out of the public
#: /metrics (22 buckets per team; the per-team score counters, 12 series a team, are in it).
TEAM_PREFIX: Final = "leadscore_team_"


log = logging.getLogger(__name__)
#: What /metrics reads from the database when scraped: a list of ready families.
Sampler = Callable[[], Awaitable[list[Metric]]]


def backlog_families(
    backlog: dict[str, tuple[int, datetime | None]], now: datetime
) -> list[Metric]:
    """The CRM queues' depth and the age of their oldest entry (0 when empty)."""
    depth = GaugeMetricFamily(
        "leadscore_crm_queue_depth",
        "Webhooks (inbox) and write-backs (outbox) waiting, every team's.",
        labels=["queue"],
    )
    age = GaugeMetricFamily(
        "leadscore_crm_queue_oldest_seconds",
        "Age of the oldest waiting webhook (inbox) or write-back (outbox); 0 when none waits.",
        labels=["queue"],
    )
    for queue, (count, oldest) in sorted(backlog.items()):
        depth.add_metric([queue], count)
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        age.add_metric([queue], max((now - oldest).total_seconds(), 0.0) if oldest else 0.0)
    return [depth, age]


def model_info_family(aliases: Iterable[tuple[str, str, str]]) -> list[Metric]:
    """Which version each alias points at: team is a team id, or `global`."""
    info = GaugeMetricFamily(
        "leadscore_model_info",
        "Model versions by alias (champion, challenger); team is a team id or global.",
        labels=["team", "version", "alias"],
    )
    for scope, alias, version in aliases:
        info.add_metric([scope, version, alias], 1.0)
    return [info]


class _Families(Collector):
    """Families already built (the scrape-time samples)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        """The families as given."""
        return self.families


class _Without(Collector):
    """Another collector's families except the per-team ones."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        """Every family whose name does not start with the per-team prefix."""
        return [f for f in self.source.collect() if not f.name.startswith(TEAM_PREFIX)]


@dataclass
class Metrics:
    """The service's counters, gauges and histograms, in a registry of its own (one per app),
    and the scrape-time samplers."""

    registry: CollectorRegistry
    scores: Counter
    latency: Histogram
    team_latency: Histogram
    http: Histogram
    ws_connections: Gauge
    ws_dropped: Counter
    training_started: Counter
    training_finished: Counter
    training_seconds: Histogram
    samplers: list[Sampler] = field(default_factory=list)
    # (team, class, hit, escalated) → its series: a label lookup per score costs more.
    _series: dict[tuple[int, str, bool, bool], tuple[Counter, Histogram]] = field(
        default_factory=dict
    )
    _http_series: dict[tuple[str, str, int], Histogram] = field(default_factory=dict)

    @classmethod
    def create(cls) -> Metrics:
        """Fresh metrics; with several workers the values live in PROMETHEUS_MULTIPROC_DIR."""
        registry = CollectorRegistry(auto_describe=True)
        scores = Counter(
            "leadscore_scores",
            "Scores returned, by team id, class, cache use and escalation (qualification).",
            ["team", "classification", "cache", "escalated"],
            registry=registry,
        )
        latency = Histogram(
            "leadscore_score_seconds",
            "Time to score one lead inside the service (excluding HTTP).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        team_latency = Histogram(
            f"{TEAM_PREFIX}score_seconds",
            "Time to score one lead per team.",
            ["team"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        http = Histogram(
            "leadscore_http_request_duration_seconds",
            "HTTP requests by route template, method and status class, from the first byte "
            "received to the last sent.",
            ["route", "method", "status"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        ws_connections = Gauge(
            "leadscore_ws_connections",
            "Open live-event WebSocket connections, over every worker alive.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        ws_dropped = Counter(
            "leadscore_ws_dropped_frames",
            "Live events dropped for a client too slow to take them (its queue was full).",
            registry=registry,
        )
        training_started = Counter(
            "leadscore_training_jobs_started",
            "Training jobs started by this service (train, export, scheduled).",
            registry=registry,
        )
        training_finished = Counter(
            "leadscore_training_jobs_finished",
            "Training jobs ended, by outcome (succeeded, failed, interrupted).",
            ["outcome"],
            registry=registry,
        )
        training_seconds = Histogram(
            "leadscore_training_job_seconds",
            "How long training jobs ran, by outcome.",
            ["outcome"],
            buckets=TRAINING_BUCKETS,
            registry=registry,
        )
        return cls(
            registry, scores, latency, team_latency, http, ws_connections, ws_dropped,
            training_started, training_finished, training_seconds,
        )  # fmt: skip

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one HTTP request under its route template (never the raw path)."""
        key = (route, method, status // 100)
        series = self._http_series.get(key)
        if series is None:
            series = self.http.labels(route, method, f"{status // 100}xx")
            self._http_series[key] = series
        series.observe(seconds)

    def training(self, outcome: str, seconds: float) -> None:
        """Count one ended training job."""
        self.training_finished.labels(outcome).inc()
        self.training_seconds.labels(outcome).observe(seconds)

    def observe(
        self, team_id: int, classification: str, cache_hit: bool, escalated: bool, seconds: float
    ) -> None:
        """Count one returned score, overall and for its team."""
        key = (team_id, classification, cache_hit, escalated)
        series = self._series.get(key)
        if series is None:
            labels = (classification, "hit" if cache_hit else "miss", "yes" if escalated else "no")
            series = (
                self.scores.labels(str(team_id), *labels),
                self.team_latency.labels(str(team_id)),
            )
            self._series[key] = series
        scores, team_latency = series
        scores.inc()
        self.latency.observe(seconds)
        team_latency.observe(seconds)

    def add_sampler(self, sampler: Sampler) -> None:
        """Families read from the database at each scrape (shared by every worker)."""
        self.samplers.append(sampler)

    async def _sampled(self) -> list[Metric]:
        """Every sampler's families; one that fails or times out is left out of this scrape."""
        families: list[Metric] = []
        results = await asyncio.gather(
            *(asyncio.wait_for(sample(), SAMPLE_TIMEOUT_SECONDS) for sample in self.samplers),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                log.warning("metrics: a sample was left out: %s", type(result).__name__)
            else:
                families += result
        return families

    def _collecting_registry(self) -> CollectorRegistry:
        path = os.environ.get(MULTIPROC_ENV)
        if not path:
            return self.registry
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        return registry

    async def exposition(self) -> bytes:
        """Prometheus text format: the counters summed over every worker (without the
        per-team latency), then the families sampled from the database."""
        public = CollectorRegistry()
        public.register(_Without(self._collecting_registry()))
        public.register(_Families(await self._sampled()))
        return generate_latest(public)

    def summary(self, team_id: int | None = None) -> dict[str, object]:
        """Counts, rates and latency percentiles (interpolated within histogram buckets), of
        every score or, with `team_id`, of that team's only."""
        latency = "leadscore_" if team_id is None else TEAM_PREFIX
        team = None if team_id is None else str(team_id)
        per_class = {"hot": 0.0, "warm": 0.0, "cold": 0.0}
        hits = escalated = total = 0.0
        buckets: dict[float, float] = {}
        for family in self._collecting_registry().collect():
            for sample in family.samples:
                if sample.name == "leadscore_scores_total":
                    if team is not None and sample.labels["team"] != team:
                        continue
                    value = sample.value
                    total += value
                    per_class[sample.labels["classification"]] += value
                    hits += value if sample.labels["cache"] == "hit" else 0.0
                    escalated += value if sample.labels["escalated"] == "yes" else 0.0
                elif (
                    sample.name == f"{latency}score_seconds_bucket"
                    and sample.labels.get("team") == team
                ):
                    bound = float(sample.labels["le"])
                    buckets[bound] = buckets.get(bound, 0.0) + sample.value
        bounds = sorted(buckets)
        count = buckets.get(float("inf"), 0.0)

        def quantile(q: float) -> float | None:
            if count == 0:
                return None
            rank = q * count
            previous_bound, previous_count = 0.0, 0.0
            for bound in bounds:
                if buckets[bound] >= rank:
                    if bound == float("inf"):
                        return round(previous_bound * 1000, 3)
                    share = (rank - previous_count) / max(buckets[bound] - previous_count, 1e-12)
                    return round((previous_bound + share * (bound - previous_bound)) * 1000, 3)
                previous_bound, previous_count = bound, buckets[bound]
            return None

        return {
            "predictions": int(total),
            "latency_ms": {"p50": quantile(0.5), "p95": quantile(0.95), "p99": quantile(0.99)},
            "share_under_target": (buckets.get(TARGET_SECONDS, 0.0) / count) if count else None,
            "target_ms": TARGET_SECONDS * 1000,
            "cache_hit_rate": hits / total if total else None,
            "escalation_rate": escalated / total if total else None,
            "scores_per_class": {k: int(v) for k, v in per_class.items()},
        }
