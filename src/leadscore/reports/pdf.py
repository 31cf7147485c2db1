"""The broker's report as a PDF: matplotlib pages laid out in inches for A4 and Letter paper."""

from __future__ import annotations

import io
import textwrap
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import matplotlib as mpl
from matplotlib.axes import Axes
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

Paper = Literal["a4", "letter"]
PAPER_INCHES: Final[dict[str, tuple[float, float]]] = {"a4": (8.27, 11.69), "letter": (8.5, 11.0)}
MARGIN: Final = 0.6  # inches on every side
CLASSES: Final = ("hot", "warm", "cold")
CLASS_COLOURS: Final = {"hot": "#C0392B", "warm": "#E67E22", "cold": "#2E86C1"}
INK: Final = "#1B1B1B"
MUTED: Final = "#5F6B7A"
RULE: Final = "#C8CED6"
HEAD_FILL: Final = "#1F3A5F"
BAND_FILL: Final = "#F2F4F7"
#: Text size in points: body, table, small print.
BODY: Final = 9.5
TABLE: Final = 8.0
SMALL: Final = 7.5
PAGES: Final = 5
#: Lines of a table cell, in multiples of the text size (matplotlib's `linespacing`).
LINE_SPACING: Final = 1.3
#: Average width of a character, in ems, to wrap table cells by (DejaVu Sans; bold is wider).
CHAR_EM: Final = 0.6
#: matplotlib's rcParams are process-wide: one render at a time sets and reads them.
_RENDER_LOCK: Final = threading.Lock()


@dataclass
class ReportData:
    """What the report shows, gathered from the services before it is drawn."""

    team: str
    since: datetime
    until: datetime
    pipeline: dict[str, dict[str, Any]]
    top_leads: list[dict[str, Any]]
    figures: dict[str, Any]
    queue: dict[str, Any]
    health: dict[str, Any]


def money(value: float | None) -> str:
    """$12,345 (no cents: estimates)."""
    return "—" if value is None else f"${value:,.0f}"


def pct(value: float | None, digits: int = 0) -> str:
    """A share 0–1 as a percentage."""
    return "—" if value is None else f"{100 * value:.{digits}f} %"


def day(moment: datetime) -> str:
    """A date as a broker reads it: 2 Dec 2026, 14:05 UTC."""
    return moment.strftime("%-d %b %Y, %H:%M UTC")


class Page:
    """One page laid out top-down in inches: a cursor moves down as blocks are placed."""

    def __init__(self, pdf: PdfPages, paper: Paper, title: str, footer: str, number: int) -> None:
        self.pdf = pdf
        self.width, self.height = PAPER_INCHES[paper]
        self.figure = Figure(figsize=(self.width, self.height))
        self.y = MARGIN  # inches from the top
        self.inner = self.width - 2 * MARGIN
        self.text(title, size=16, weight="bold")
        self.y += 0.32
        self.rule()
        self.y += 0.12
        self.figure.text(
            MARGIN / self.width, 0.4 / self.height, footer, fontsize=SMALL, color=MUTED, va="bottom"
        )
        self.figure.text(1 - MARGIN / self.width, 0.4 / self.height, f"{number} / {PAGES}",
                         fontsize=SMALL, color=MUTED, va="bottom", ha="right")  # fmt: skip

    def _fx(self, x: float) -> float:
        return x / self.width

    def _fy(self, y: float) -> float:
        return 1 - y / self.height

    @property
    def left(self) -> float:
        """Inches from the top still free above the bottom margin."""
        return self.height - MARGIN - 0.3 - self.y

    def text(
        self, text: str, *, x: float = 0.0, size: float = BODY, weight: str = "normal",
        colour: str = INK, ha: str = "left",
    ) -> None:  # fmt: skip
        """A line of text whose top is at the cursor."""
        self.figure.text(self._fx(MARGIN + x), self._fy(self.y), text, fontsize=size,
                         weight=weight, color=colour, va="top", ha=ha)  # fmt: skip

    def heading(self, text: str) -> None:
        """A section heading with space above it."""
        self.y += 0.12
        self.text(text, size=12.5, weight="bold", colour=HEAD_FILL)
        self.y += 0.3

    def paragraph(self, text: str, size: float = BODY) -> None:
        """Text wrapped to the page's width, the cursor moved below it."""
        for line in textwrap.wrap(text, int(self.inner / (size / 72 * CHAR_EM))):
            self.text(line, size=size, colour=MUTED if size < BODY else INK)
            self.y += size / 72 * 1.45
        self.y += 0.06

    def rule(self) -> None:
        """A thin line across the page at the cursor."""
        y = self._fy(self.y)
        self.figure.add_artist(
            mpl.lines.Line2D([self._fx(MARGIN), self._fx(self.width - MARGIN)], [y, y],
                             color=RULE, linewidth=0.8)
        )  # fmt: skip

    def axes(
        self, height: float, width: float | None = None, x: float = 0.0, labels: float = 0.55
    ) -> Axes:
        """Axes for a chart of this height (inches) at the cursor, `labels` inches left of it
        for the tick labels; the cursor is not moved."""
        w = self.inner if width is None else width
        left, bottom = MARGIN + x + labels, self.y + height - 0.35
        rect = (
            self._fx(left), self._fy(bottom), self._fx(w - labels - 0.15),
            (height - 0.7) / self.height,
        )  # fmt: skip
        ax = self.figure.add_axes(rect)
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(labelsize=SMALL, colors=MUTED)
        return ax

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[str]],
        widths: Sequence[float],
        numeric: Sequence[bool],
        max_rows: int | None = None,
    ) -> int:
        """A table with a filled header row and wrapped cells that fit the page's width
        (`widths` are shares of it); returns how many rows fitted."""
        line = TABLE / 72 * LINE_SPACING
        scale = self.inner / sum(widths)
        inches = [w * scale for w in widths]
        chars = [max(3, int((w - 0.1) / (TABLE / 72 * CHAR_EM))) for w in inches]

        def draw_row(cells: Sequence[str], header: bool, fill: str | None) -> float:
            wrapped = [textwrap.wrap(c, n) or [""] for c, n in zip(cells, chars, strict=True)]
            height = max(len(w) for w in wrapped) * line + 0.08
            if fill is not None:
                self.figure.add_artist(
                    mpl.patches.Rectangle(
                        (self._fx(MARGIN), self._fy(self.y + height)), self._fx(self.inner),
                        height / self.height, facecolor=fill, edgecolor="none",
                    )
                )  # fmt: skip
            x = MARGIN
            for lines, w, right in zip(wrapped, inches, numeric, strict=True):
                # One text per cell, its lines `line` apart: far fewer artists to draw.
                self.figure.text(
                    self._fx(x + w - 0.05 if right else x + 0.05), self._fy(self.y + 0.04),
                    "\n".join(lines), fontsize=TABLE, va="top", linespacing=LINE_SPACING,
                    ha="right" if right else "left", multialignment="right" if right else "left",
                    color="white" if header else INK, weight="bold" if header else "normal",
                )  # fmt: skip
                x += w
            return height

        self.y += draw_row(headers, True, HEAD_FILL)
        shown = 0
        for index, row in enumerate(rows):
            if max_rows is not None and shown >= max_rows:
                break
            wrapped = max(len(textwrap.wrap(c, n) or [""]) for c, n in zip(row, chars, strict=True))
            if wrapped * line + 0.08 > self.left:
                break
            self.y += draw_row(row, False, BAND_FILL if index % 2 else None)
            shown += 1
        self.rule()
        self.y += 0.12
        return shown

    def save(self) -> None:
        """Add the page to the document."""
        self.pdf.savefig(self.figure)  # type: ignore[no-untyped-call]


def render(data: ReportData, paper: Paper = "a4") -> bytes:
    """The report's pages as one PDF."""
    buffer = io.BytesIO()
    # Type 3 fonts (matplotlib's default) carry the glyph names: the text can be extracted
    # and searched, and they are several times faster to embed than TrueType subsets.
    with _RENDER_LOCK, mpl.rc_context({"pdf.fonttype": 3, "font.family": "DejaVu Sans"}):
        metadata = {"Title": f"LeadScore report — {data.team}", "Author": "LeadScore",
                    "Subject": f"{day(data.since)} to {day(data.until)}"}  # fmt: skip
        with PdfPages(buffer, metadata=metadata) as pdf:
            footer = f"LeadScore · team {data.team} · {day(data.since)} to {day(data.until)}"
            _summary_page(Page(pdf, paper, f"Lead report: {data.team}", footer, 1), data)
            _top_leads_page(Page(pdf, paper, "Leads to call first", footer, 2), data)
            _scores_page(Page(pdf, paper, "Scores and conversion", footer, 3), data)
            _queue_page(Page(pdf, paper, "Qualification queue", footer, 4), data)
            _model_page(Page(pdf, paper, "Model health", footer, 5), data)
    return buffer.getvalue()


def _summary_page(page: Page, data: ReportData) -> None:
    pipeline = data.pipeline
    leads = sum(p["leads"] for p in pipeline.values())
    total = sum(p["expected_commission"] for p in pipeline.values())
    counts = data.queue["counts"]
    page.paragraph(
        f"Period: {day(data.since)} to {day(data.until)}. Leads are counted by their latest "
        "score; scores in the period feed the distribution and the live figures.",
        size=SMALL,
    )
    page.heading("At a glance")
    boxes = [
        ("Scored leads", f"{leads:,}"),
        ("Hot leads", f"{pipeline['hot']['leads']:,}"),
        ("Expected commission", money(total)),
        ("Waiting to qualify", f"{sum(counts.values()):,}"),
        ("Scores in period", f"{data.figures['scores']:,}"),
    ]
    width = page.inner / len(boxes)
    for k, (_, value) in enumerate(boxes):
        page.text(value, x=k * width, size=15, weight="bold")
    page.y += 0.3
    for k, (label, _) in enumerate(boxes):
        page.text(label, x=k * width, size=SMALL, colour=MUTED)
    page.y += 0.3
    page.heading("Pipeline by class")
    rows = [
        [cls.capitalize(), f"{pipeline[cls]['leads']:,}", pct(pipeline[cls]["leads"] / leads)
         if leads else "—", money(pipeline[cls]["expected_commission"]),
         pct(pipeline[cls]["expected_commission"] / total) if total else "—"]
        for cls in CLASSES
    ]  # fmt: skip
    rows.append(["All", f"{leads:,}", "100 %" if leads else "—", money(total),
                 "100 %" if total else "—"])  # fmt: skip
    page.table(
        ["Class", "Leads", "Share of leads", "Expected commission", "Share of commission"],
        rows, [1.2, 1, 1.2, 1.6, 1.6], [False, True, True, True, True],
    )  # fmt: skip
    height = 3.0
    ax = page.axes(height, width=page.inner / 2 - 0.1)
    values = [pipeline[cls]["leads"] for cls in CLASSES]
    ax.bar([c.capitalize() for c in CLASSES], values, color=[CLASS_COLOURS[c] for c in CLASSES])
    ax.set_title("Leads by class", fontsize=BODY, loc="left", color=INK)
    for k, value in enumerate(values):
        ax.annotate(f"{value:,}", (k, value), ha="center", va="bottom", fontsize=SMALL)
    ax2 = page.axes(height, width=page.inner / 2 - 0.1, x=page.inner / 2 + 0.1)
    money_values = [pipeline[cls]["expected_commission"] / 1000 for cls in CLASSES]
    ax2.bar([c.capitalize() for c in CLASSES], money_values,
            color=[CLASS_COLOURS[c] for c in CLASSES])  # fmt: skip
    ax2.set_title("Expected commission ($ thousands)", fontsize=BODY, loc="left", color=INK)
    for k, value in enumerate(money_values):
        ax2.annotate(f"{value:,.0f}", (k, value), ha="center", va="bottom", fontsize=SMALL)
    page.y += height + 0.1
    page.paragraph(
        "Scores are calibrated probabilities of conversion × 100. "
        "Expected commission = estimated sale price × the team's commission rate × P(closing). "
        "Leads without a budget have no estimate and add nothing.",
        size=SMALL,
    )
    page.save()


def _reasons(lead: dict[str, Any]) -> str:
    return "; ".join(r["text"] for r in lead.get("reasons") or []) or "—"


def _top_leads_page(page: Page, data: ReportData) -> None:
    page.paragraph(
        "The highest-scoring leads, best first, with the reasons that moved their score most "
        "and the question to ask next. Call from the top.",
        size=SMALL,
    )
    if not data.top_leads:
        page.paragraph("No scored leads yet.")
        page.save()
        return
    rows = [
        [str(k), lead["name"] or lead["lead_id"], f"{lead['ml_score']:.1f}",
         (lead["classification"] or "").capitalize(), pct(lead["ml_confidence"]),
         money(lead["expected_commission"]), _reasons(lead),
         (lead.get("top_question") or {}).get("question") or "—"]
        for k, lead in enumerate(data.top_leads, start=1)
    ]  # fmt: skip
    page.table(
        ["#", "Lead", "Score", "Class", "Conf.", "Commission", "Why", "Ask next"],
        rows, [0.35, 1.9, 0.68, 0.65, 0.65, 1.1, 3.0, 1.7],
        [True, False, True, False, True, True, False, False],
    )  # fmt: skip
    page.save()


def _scores_page(page: Page, data: ReportData) -> None:
    figures = data.figures
    page.heading("Conversion by score band")
    bands = figures["conversion_by_band"]
    if bands:
        height = 2.8
        ax = page.axes(height)
        labels = [f"{b['lower']}–{b['upper']}" for b in bands]
        xs = range(len(bands))
        ax.bar(
            [x - 0.2 for x in xs],
            [b["expected"] * 100 for b in bands],
            0.4,
            label="Expected (mean score)",
            color="#9DB4CF",
        )
        ax.bar([x + 0.2 for x in xs], [b["actual"] * 100 for b in bands], 0.4,
               label="Actual (recorded outcomes)", color=HEAD_FILL)  # fmt: skip
        ax.set_xticks(list(xs), labels)
        ax.set_ylabel("% converted", fontsize=SMALL)
        ax.set_xlabel("score band", fontsize=SMALL)
        ax.legend(fontsize=SMALL, frameon=False, loc="upper left")
        page.y += height + 0.05
        page.table(
            ["Score band", "Leads with outcome", "Expected", "Actual", "Difference"],
            [[label, f"{b['leads']:,}", pct(b["expected"], 1), pct(b["actual"], 1),
              f"{100 * (b['actual'] - b['expected']):+.1f} pts"]
             for label, b in zip(labels, bands, strict=True)],
            [1.2, 1.4, 1, 1, 1], [False, True, True, True, True],
        )  # fmt: skip
    else:
        page.paragraph(
            "No outcomes recorded yet: once converted, closed or lost leads are reported "
            "(POST /api/v1/ml/outcomes), each band's actual rate appears beside its expected one."
        )
    page.heading("Score distribution")
    page.paragraph(
        f"{figures['scores']:,} scores from {day(datetime.fromisoformat(figures['since']))} to "
        f"{day(datetime.fromisoformat(figures['until']))}, by 10-point band.",
        size=SMALL,
    )
    height = min(3.0, page.left - 0.2)
    ax = page.axes(height)
    spread = figures["score_distribution"]
    colours = [
        CLASS_COLOURS["hot"] if b["lower"] >= 70 else CLASS_COLOURS["warm"]
        if b["lower"] >= 40 else CLASS_COLOURS["cold"] for b in spread
    ]  # fmt: skip
    ax.bar([f"{b['lower']}" for b in spread], [b["count"] for b in spread], color=colours)
    ax.set_xlabel("score band (lower bound); colours: default class thresholds", fontsize=SMALL)
    ax.set_ylabel("scores", fontsize=SMALL)
    page.y += height
    page.save()


def _reason_codes(reasons: Sequence[str]) -> str:
    return ", ".join(r.replace("_", " ") for r in reasons) or "—"


def _queue_page(page: Page, data: ReportData) -> None:
    counts = data.queue["counts"]
    page.paragraph(
        f"{counts.get('open', 0):,} open and {counts.get('claimed', 0):,} claimed. These leads "
        "are scored with too little confidence or too little known about them; the answers to "
        "the questions listed move their score most."
    )
    escalations = data.queue["escalations"]
    if not escalations:
        page.paragraph("The queue is empty.")
        page.save()
        return
    page.heading("Oldest first")
    rows = [
        [e["name"] or e["lead_id"], e["status"], e["opened_at"][:16].replace("T", " "),
         "—" if e["ml_score"] is None else f"{e['ml_score']:.1f}",
         pct(e["ml_confidence"]), _reason_codes(e["reasons"]),
         "; ".join(q["question"] for q in e["ask_next"][:2]) or "—",
         e["claimed_by"] or "—"]
        for e in escalations
    ]  # fmt: skip
    shown = page.table(
        ["Lead", "Status", "Opened (UTC)", "Score", "Conf.", "Why", "Ask next", "Claimed by"],
        rows, [1.5, 0.7, 1.2, 0.6, 0.6, 1.4, 2.6, 1.0],
        [False, False, False, True, True, False, False, False],
    )  # fmt: skip
    waiting = sum(counts.values())
    if shown < waiting:
        page.paragraph(f"{waiting - shown:,} more in the dashboard's queue.", size=SMALL)
    page.save()


def _metric(metrics: dict[str, Any] | None, name: str) -> str:
    value = (metrics or {}).get(name)
    return "—" if value is None else f"{value:.3f}"


def _model_page(page: Page, data: ReportData) -> None:
    health = data.health
    card = (health.get("metrics") or {}).get("conversion") or {}
    page.heading("Serving model")
    page.table(
        ["Version", "Algorithm", "Trained", "Held-out AUC", "Held-out Brier"],
        [[health.get("version") or "—", str(health.get("algorithm") or "—"),
          str(health.get("trained_at") or "—")[:16].replace("T", " "),
          _metric(card, "auc"), _metric(card, "brier")]],
        [2.4, 1.2, 1.4, 1, 1], [False, False, False, True, True],
    )  # fmt: skip
    page.heading("Live quality (scores against the outcomes recorded since)")
    versions = (health.get("live_quality") or {}).get("versions") or {}
    if versions:
        page.table(
            ["Version", "Leads with outcome", "AUC", "Brier", "Note"],
            [[v, f"{int(q.get('n', 0)):,}", _metric(q, "auc"), _metric(q, "brier"),
              q.get("detail", "")] for v, q in versions.items()],
            [2.4, 1.2, 0.8, 0.8, 2.4], [False, True, True, True, False],
        )  # fmt: skip
    else:
        page.paragraph("No outcomes recorded for scored leads yet.")
    page.heading("Drift (population stability of recent leads against training)")
    drift = health.get("drift") or {}
    if "score_psi" not in drift:
        page.paragraph(str(drift.get("detail") or "No drift report."))
        page.save()
        return
    status = "ALERT: the leads differ from those the model learned on" if drift["alert"] else (
        "Stable: recent leads look like the training leads"
    )  # fmt: skip
    page.paragraph(
        f"{status}. Score PSI {drift['score_psi']:.3f} (alert above {drift['threshold']:.2f}) "
        f"over {drift['rows']:,} recent leads; drifted: "
        f"{', '.join(drift['drifted_features']) or 'none'}."
    )
    top = list(drift["feature_psi"].items())[:12]
    if top:
        height = min(3.6, page.left - 0.1)
        ax = page.axes(height, labels=2.0)
        names = [name for name, _ in reversed(top)]
        values = [value for _, value in reversed(top)]
        colours = [CLASS_COLOURS["hot"] if v > drift["threshold"] else "#9DB4CF" for v in values]
        ax.barh(names, values, color=colours)
        ax.axvline(drift["threshold"], color=MUTED, linestyle="--", linewidth=0.8)
        ax.set_xlabel("PSI (dashed: alert threshold)", fontsize=SMALL)
        ax.tick_params(axis="y", labelsize=SMALL)
        ax.set_title("Most shifted features", fontsize=BODY, loc="left", color=INK)
        page.y += height
    page.save()
