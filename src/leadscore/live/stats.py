"""Fan-out figures: latency percentiles per worker, merged over every worker."""

from __future__ import annotations

from typing import Any, Final

LATENCY_SAMPLES: Final = 10_000


def _rank(sorted_samples: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted samples."""
    index = min(len(sorted_samples) - 1, max(0, round(q / 100.0 * len(sorted_samples)) - 1))
    return sorted_samples[index]


def percentiles(samples: list[float]) -> dict[str, float | None]:
    """p50, p95, p99 and max of a worker's fan-out latency samples (ms), and how many."""
    if not samples:
        return {"p50": None, "p95": None, "p99": None, "max": None, "count": 0}
    return {
        "p50": round(_rank(samples, 50), 3),
        "p95": round(_rank(samples, 95), 3),
        "p99": round(_rank(samples, 99), 3),
        "max": round(samples[-1], 3),
        "count": len(samples),
    }


def merge_metrics(workers: list[dict[str, Any]]) -> dict[str, Any]:
    """Every worker's hub figures summed; latency percentiles over their pooled samples."""
    totals: dict[str, Any] = {}
    closed: dict[str, int] = {}
    per_type: dict[str, int] = {}
    samples: list[float] = []
    for m in workers:
        for key, value in m.items():
            if isinstance(value, int) and not isinstance(value, bool):
                totals[key] = totals.get(key, 0) + value
        for why, n in m["closed_by_reason"].items():
            closed[why] = closed.get(why, 0) + n
        for event_type, n in m["subscriptions"].items():
            per_type[event_type] = per_type.get(event_type, 0) + n
        samples += m["latency_samples"]
    return totals | {
        "workers": len(workers),
        "closed_by_reason": closed,
        "subscriptions": per_type,
        "fanout_latency_ms": percentiles(sorted(samples)),
        "per_worker": [{k: v for k, v in m.items() if k != "latency_samples"} for m in workers],
    }
