"""The report drawn from known figures (no server): every section, long text, both papers."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from matplotlib import image

from leadscore.core.timestamps import iso_z
from leadscore.reports.pdf import ReportData, render


def _data(now: datetime, leads: int = 40, queue: int = 40) -> ReportData:
    reasons = [
        {"text": "Viewed one listing 9 times this week: +12.4 points"},
        {"text": "Pre-approved for a mortgage: +8.1 points"},
    ]
    top = [
        {"lead_id": f"lead_{k}", "name": f"Bartholomew Featherstonehaugh-{k}",
         "ml_score": 95.0 - k, "classification": "hot", "ml_confidence": 0.93,
         "expected_commission": 41250.0 - 100 * k, "reasons": reasons,
         "top_question": {"field": "financing", "question": "Are you paying cash or financing?"}}
        for k in range(leads)
    ]  # fmt: skip
    escalations = [
        {"lead_id": f"q_{k}", "name": f"Queue Lead {k}", "status": "open" if k % 3 else "claimed",
         "opened_at": iso_z(now - timedelta(hours=k)), "ml_score": 55.5, "ml_confidence": 0.71,
         "reasons": ["low_confidence", "thin_data"], "claimed_by": None if k % 3 else "agent 7",
         "ask_next": [{"question": "When are you hoping to move?"},
                      {"question": "Have you spoken to a lender yet?"}]}
        for k in range(queue)
    ]  # fmt: skip
    return ReportData(
        team="acme-realty",
        since=now - timedelta(days=30),
        until=now,
        pipeline={
            "hot": {"leads": 120, "expected_commission": 1_250_000.0, "with_commission": 110},
            "warm": {"leads": 340, "expected_commission": 910_000.0, "with_commission": 300},
            "cold": {"leads": 2210, "expected_commission": 300_500.0, "with_commission": 1800},
        },
        top_leads=top,
        figures={
            "since": iso_z(now - timedelta(days=30)),
            "until": iso_z(now),
            "scores": 5120,
            "score_distribution": [
                {"lower": b * 10, "upper": b * 10 + 10, "count": 50 * (10 - b)} for b in range(10)
            ],
            "conversion_by_band": [
                {
                    "lower": b * 10,
                    "upper": b * 10 + 10,
                    "leads": 30 + b,
                    "expected": b / 10 + 0.05,
                    "actual": b / 10 + 0.03,
                }
                for b in range(10)
            ],
        },
        queue={"counts": {"open": 27, "claimed": 13}, "escalations": escalations},
        health={
            "version": "20261201-abc123",
            "algorithm": "lightgbm",
            "trained_at": iso_z(now),
            "metrics": {"conversion": {"auc": 0.812, "brier": 0.091}},
            "live_quality": {
                "versions": {"20261201-abc123": {"n": 640, "auc": 0.79, "brier": 0.1}}
            },
            "drift": {
                "rows": 5000,
                "threshold": 0.2,
                "score_psi": 0.07,
                "alert": True,
                "drifted_features": ["repeat_listing_views"],
                "feature_psi": {f"feature_number_{k}": 0.3 - 0.02 * k for k in range(15)},
            },
        },
    )


def _pages(body: bytes, where: Path) -> tuple[list[Path], str]:
    pdf = where / "report.pdf"
    pdf.write_bytes(body)
    subprocess.run(["pdftoppm", "-r", "80", "-png", str(pdf), str(where / "page")], check=True,
                   timeout=120)  # fmt: skip
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True,
                          capture_output=True, text=True, timeout=60).stdout  # fmt: skip
    return sorted(where.glob("page-*.png")), text


def _ink(page: Path, columns: slice = slice(None)) -> float:
    pixels: Any = image.imread(page)[..., :3]
    return float((pixels[:, columns].mean(axis=2) < 0.9).mean())


@pytest.mark.parametrize("paper", ["a4", "letter"])
def test_every_section_fits_its_page(tmp_path: Path, paper: str) -> None:
    now = datetime.now(UTC)
    pages, text = _pages(render(_data(now), paper), tmp_path)  # type: ignore[arg-type]
    assert len(pages) == 5
    for page in pages:
        assert _ink(page) > 0.01, f"{page.name} is blank"
        # Nothing runs into the right margin (the last 0.5 inch of the page at 80 dpi).
        assert _ink(page, slice(-40, None)) == 0.0, f"{page.name} runs off the page"
    for heading in ("At a glance", "Pipeline by class", "Leads to call first", "Conversion by "
                    "score band", "Score distribution", "Qualification queue", "Model health",
                    "Most shifted features"):  # fmt: skip
        assert heading in text
    assert "Bartholomew" in text
    assert "$2,460,500" in text  # the pipeline's total expected commission
    assert "ALERT" in text
    assert "more in the dashboard's queue" in text  # 40 waiting, fewer fit the page


def test_an_empty_team_still_reads(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    data = _data(now, leads=0, queue=0)
    data.queue = {"counts": {"open": 0, "claimed": 0}, "escalations": []}
    data.figures["conversion_by_band"] = []
    data.health["drift"] = {"detail": "fewer than 200 scored leads: nothing to compare yet"}
    pages, text = _pages(render(data), tmp_path)
    assert len(pages) == 5
    assert "No scored leads yet" in text
    assert "The queue is empty" in text
    assert "No outcomes recorded yet" in text
    assert "nothing to compare yet" in text
