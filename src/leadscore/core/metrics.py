"""Scoring metrics in Prometheus form, correct across workers (multiprocess mode), and the
performance summaries derived from the very same counters, so the two never disagree."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS: Final = (
    0.0002, 0.0003, 0.0004, 0.0005, 0.0006, 0.0007, 0.0008, 0.0009, 0.001, 0.0015, 0.002,
    0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
TARGET_SECONDS: Final = 0.001
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
#: Per-team series: they feed each team's own summary and stay out of the public /metrics.
TEAM_PREFIX: Final = "leadscore_team_"


class _Without(Collector):
    """Another collector's families except the per-team ones."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        """Every family whose name does not start with the per-team prefix."""
        return [f for f in self.source.collect() if not f.name.startswith(TEAM_PREFIX)]


@dataclass
class Metrics:
    """The service's counters and latency histograms (overall and per team), in a registry
    of its own."""

    registry: CollectorRegistry
    scores: Counter
    latency: Histogram
    team_scores: Counter
    team_latency: Histogram
    # (team, class, hit, escalated) → its three series: a label lookup per score costs more.
    _series: dict[tuple[int, str, bool, bool], tuple[Counter, Counter, Histogram]] = field(
        default_factory=dict
    )

    @classmethod
    def create(cls) -> Metrics:
        """Fresh metrics; with several workers the values live in PROMETHEUS_MULTIPROC_DIR."""
        registry = CollectorRegistry(auto_describe=True)
        labels = ["classification", "cache", "escalated"]
        scores = Counter(
            "leadscore_scores",
            "Scores returned, by class, cache use and escalation.",
            labels,
            registry=registry,
        )
        latency = Histogram(
            "leadscore_score_seconds",
            "Time to score one lead inside the service (excluding HTTP).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        team_scores = Counter(
            f"{TEAM_PREFIX}scores",
            "Scores returned per team, by class, cache use and escalation.",
            ["team", *labels],
            registry=registry,
        )
        team_latency = Histogram(
            f"{TEAM_PREFIX}score_seconds",
            "Time to score one lead per team.",
            ["team"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        return cls(registry, scores, latency, team_scores, team_latency)

    def observe(
        self, team_id: int, classification: str, cache_hit: bool, escalated: bool, seconds: float
    ) -> None:
        """Count one returned score, overall and for its team."""
        key = (team_id, classification, cache_hit, escalated)
        series = self._series.get(key)
        if series is None:
            labels = (classification, "hit" if cache_hit else "miss", "yes" if escalated else "no")
            series = (
                self.scores.labels(*labels),
                self.team_scores.labels(str(team_id), *labels),
                self.team_latency.labels(str(team_id)),
            )
            self._series[key] = series
        overall, team, team_latency = series
        overall.inc()
        team.inc()
        self.latency.observe(seconds)
        team_latency.observe(seconds)

    def _collecting_registry(self) -> CollectorRegistry:
        path = os.environ.get(MULTIPROC_ENV)
        if not path:
            return self.registry
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        return registry

    def exposition(self) -> bytes:
        """Prometheus text format, summed over every worker (the overall series only)."""
        public = CollectorRegistry()
        public.register(_Without(self._collecting_registry()))
        return generate_latest(public)

    def summary(self, team_id: int | None = None) -> dict[str, object]:
        """Counts, rates and latency percentiles (interpolated within histogram buckets), of
        every score or, with `team_id`, of that team's only."""
        prefix = "leadscore_" if team_id is None else TEAM_PREFIX
        team = None if team_id is None else str(team_id)
        per_class = {"hot": 0.0, "warm": 0.0, "cold": 0.0}
        hits = escalated = total = 0.0
        buckets: dict[float, float] = {}
        for family in self._collecting_registry().collect():
            for sample in family.samples:
                if sample.labels.get("team") != team:
                    continue
                if sample.name == f"{prefix}scores_total":
                    value = sample.value
                    total += value
                    per_class[sample.labels["classification"]] += value
                    hits += value if sample.labels["cache"] == "hit" else 0.0
                    escalated += value if sample.labels["escalated"] == "yes" else 0.0
                elif sample.name == f"{prefix}score_seconds_bucket":
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
