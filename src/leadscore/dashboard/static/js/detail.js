// One lead: its score as a waterfall of contributions in score points, its score history with
// why it moved, the questions that would move it most, the money, and the lead's own data.

import { api } from "./api.js";
import { $, badge, card, errorText, fill, fmtMoney, fmtNum, fmtPct, fmtPoints, fmtScore, h, humanize, reasonText, signClass, timeEl } from "./dom.js";
import { chart, figure } from "./charts.js";
import { onLive } from "./live.js";

let shown = null;
let again = null;

/** Base score, then each reason group's points, then the score: the steps add up exactly. */
export function waterfallSteps(latest) {
  const groups = latest.group_contributions
    ?? Object.fromEntries((latest.reasons ?? []).map((r) => [r.feature, r.points]));
  const texts = {};
  for (const reason of latest.reasons ?? []) {
    (texts[reason.group] ??= []).push(reasonText(reason.text));
  }
  const entries = Object.entries(groups).filter(([, points]) => points !== 0)
    .sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]));
  const total = entries.reduce((sum, [, points]) => sum + points, 0);
  const base = latest.ml_score - total;
  let running = base;
  const steps = [{ label: "Base rate", detail: "the average lead before anything is known", from: 0, to: base, kind: "base" }];
  for (const [group, points] of entries) {
    steps.push({ label: humanize(group), detail: (texts[group] ?? []).join("; "), from: running, to: running + points, points, kind: signClass(points) });
    running += points;
  }
  steps.push({ label: "Score", detail: "", from: 0, to: latest.ml_score, kind: "total" });
  return steps;
}

function waterfall(latest) {
  const steps = waterfallSteps(latest);
  const clamp = (v) => Math.max(0, Math.min(100, v));
  return h("ol", { class: "waterfall", "aria-label": "Score contributions in points" }, steps.map((step) => {
    const left = clamp(Math.min(step.from, step.to));
    const width = Math.max(0.4, clamp(Math.max(step.from, step.to)) - left);
    const value = step.kind === "base" || step.kind === "total" ? fmtScore(step.to) : fmtPoints(step.points);
    return h("li", { class: `step ${step.kind}` },
      h("span", { class: "step-label" }, h("span", {}, step.label),
        step.detail ? h("span", { class: "muted small" }, step.detail) : null),
      h("span", { class: "track", "aria-hidden": "true" },
        h("span", { class: "bar", style: { left: `${left}%`, width: `${width}%` } })),
      h("span", { class: `step-value num ${step.kind}` }, value));
  }));
}

function history(entries) {
  const points = entries.filter((e) => e.scored_at).slice().sort((a, b) => Date.parse(a.scored_at) - Date.parse(b.scored_at));
  const body = [];
  if (points.length > 1) {
    const fig = figure(`Score over time: ${points.length} scores, from ${fmtScore(points[0].ml_score)} to ${fmtScore(points.at(-1).ml_score)}`);
    chart(fig.box, {
      data: [points.map((e) => Date.parse(e.scored_at) / 1000), points.map((e) => e.ml_score)],
      series: [{ label: "Score", color: "accent", points: true }],
      yRange: [0, 100],
      height: 200,
    });
    body.push(fig.el);
  }
  const changes = points.slice().reverse();
  body.push(h("ol", { class: "changes" }, changes.map((entry) =>
    h("li", {},
      h("span", { class: "num" }, fmtScore(entry.ml_score)), " ", badge(entry.classification), " ",
      timeEl(entry.scored_at), " ",
      entry.change
        ? h("span", { class: `pts ${signClass(entry.change.points)}` }, entry.change.summary,
          entry.change.model_changed ? " (new model)" : "")
        : h("span", { class: "muted" }, "first score")))));
  return card("Score history", ...body);
}

function questions(latest) {
  const ask = latest.qualification?.ask_next ?? [];
  const reasons = (latest.qualification?.reasons ?? []).map(humanize).join(", ");
  const status = latest.qualification?.needed
    ? h("p", {}, h("span", { class: "badge ask" }, "Qualification needed"), " ", reasons)
    : h("p", { class: "muted" }, "No qualification needed.");
  if (!ask.length) return card("Ask next", status, h("p", { class: "muted" }, "No open question would move this score."));
  return card("Ask next", status, h("table", { class: "plain" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Question"), h("th", { scope: "col", class: "num" }, "If yes"), h("th", { scope: "col", class: "num" }, "If no"))),
    h("tbody", {}, ask.map((q) => h("tr", {},
      h("td", {}, q.question, h("span", { class: "muted small block" }, humanize(q.field))),
      h("td", { class: `num ${signClass(q.score_if_yes - latest.ml_score)}` }, fmtScore(q.score_if_yes)),
      h("td", { class: `num ${signClass(q.score_if_no - latest.ml_score)}` }, fmtScore(q.score_if_no)))))));
}

function money(latest) {
  const c = latest.commission;
  const p = latest.probability_ranges;
  const rows = [
    ["Expected commission", fmtMoney(c?.expected_commission)],
    ["Commission if it closes", fmtMoney(c?.estimated_commission)],
    ["Estimated sale price", fmtMoney(c?.estimated_sale_price)],
    ["Commission rate", c ? fmtPct(c.commission_rate, 1) : "—"],
    ["P(converts)", fmtPct(p.conversion, 1)],
    ["P(closes)", fmtPct(p.closing, 1)],
    ["P(closes on its timeline)", fmtPct(p.timeline_accuracy, 1)],
  ];
  return card("Commission", h("dl", { class: "pairs" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", { class: "num" }, v)])));
}

function value(v) {
  if (v === null || v === undefined || v === "") return h("span", { class: "muted" }, "not known");
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (Array.isArray(v)) {
    if (!v.length) return h("span", { class: "muted" }, "none");
    return h("details", {}, h("summary", {}, `${v.length} item${v.length === 1 ? "" : "s"}`),
      h("ol", { class: "items" }, v.map((item) => h("li", {}, value(item)))));
  }
  if (typeof v === "object") {
    if (!Object.keys(v).length) return h("span", { class: "muted" }, "none");
    return h("dl", { class: "pairs nested" }, Object.entries(v).map(([k, inner]) => [h("dt", {}, humanize(k)), h("dd", {}, value(inner))]));
  }
  return String(v);
}

function leadData(lead) {
  const data = lead.lead_data ?? {};
  return card("Lead data",
    h("dl", { class: "pairs" }, Object.entries(data).map(([k, v]) => [h("dt", {}, humanize(k)), h("dd", {}, value(v))])),
    h("p", { class: "muted small" }, "First seen ", timeEl(lead.first_seen_at), ", updated ", timeEl(lead.updated_at)));
}

export async function show(leadId) {
  const body = $("lead-body");
  if (shown !== leadId || !body.childElementCount) {
    $("lead-title").textContent = leadId;
    fill(body, h("p", { class: "muted" }, "Loading…")); // a redraw of the same lead keeps it on screen
  }
  shown = leadId;
  $("lead-error").textContent = "";
  let lead;
  try {
    lead = await api(`/api/v1/ml/leads/${encodeURIComponent(leadId)}`);
  } catch (error) {
    if (shown !== leadId) return;
    fill(body);
    $("lead-error").textContent = `Could not load this lead: ${errorText(error)}`;
    return;
  }
  if (shown !== leadId) return;
  const latest = lead.latest;
  $("lead-title").textContent = lead.lead_data?.name ?? leadId;
  fill(body,
    h("section", { class: "card summary wide", "aria-label": "Score" },
      h("div", { class: "big-score" }, h("span", { class: "num" }, fmtScore(latest.ml_score)), badge(latest.classification)),
      h("dl", { class: "pairs inline" },
        h("dt", {}, "Confidence"), h("dd", {}, fmtPct(latest.ml_confidence)),
        h("dt", {}, "Evidence"), h("dd", {}, fmtPct(latest.evidence)),
        h("dt", {}, "Model"), h("dd", {}, latest.model_version),
        h("dt", {}, "Scored"), h("dd", {}, timeEl(latest.scored_at)),
        h("dt", {}, "Processing"), h("dd", {}, `${fmtNum(latest.processing_time_ms, 1)} ms`))),
    card("Why this score", h("p", { class: "muted small" }, "Each step adds its points to the base rate; the bars end at the score."), waterfall(latest)),
    history(lead.history ?? []),
    questions(latest),
    money(latest),
    leadData(lead));
}

export function setup() {
  // A new score of the lead on screen redraws it (once per burst).
  onLive("lead_scored", (event) => {
    if (event.data.lead_id !== shown || $("view-lead").hidden) return;
    clearTimeout(again);
    again = setTimeout(() => show(shown), 300);
  });
}
