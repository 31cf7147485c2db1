// The team view: GET /api/v1/ml/stats over a window, polled; latency and cache hit rate are
// kept as a client-side series of those polls (the server reports them since it started).

import { api, query } from "./api.js";
import { $, card, errorText, fill, fmtMoney, fmtNum, fmtPct, h, humanize } from "./dom.js";
import { chart, figure } from "./charts.js";

const POLL_MS = 10000;
const SERIES_MAX = 360; // an hour of polls
const series = []; // {t, p50, p95, p99, cache}
let timer = null;
let visible = false;
let last = null;

function kpi(label, value, note = null) {
  return h("div", { class: "kpi card" }, h("span", { class: "kpi-label" }, label),
    h("span", { class: "kpi-value num" }, value), note ? h("span", { class: "muted small" }, note) : null);
}

function pipeline(stats) {
  const p = stats.commission_pipeline;
  const total = p.hot + p.warm + p.cold;
  return card("Commission pipeline",
    h("p", { class: "kpi-value num" }, fmtMoney(total)),
    h("ul", { class: "hbars" }, ["hot", "warm", "cold"].map((cls) =>
      h("li", {}, h("span", { class: "hbar-label" }, humanize(cls)),
        h("span", { class: "track", "aria-hidden": "true" },
          h("span", { class: `bar ${cls}`, style: { width: `${total ? (100 * p[cls]) / total : 0}%` } })),
        h("span", { class: "num" }, fmtMoney(p[cls]))))),
    h("p", { class: "muted small" }, "Expected commission (commission × P(closing)) of every lead, by its latest class."));
}

function distribution(stats) {
  const bins = stats.score_distribution;
  const fig = figure(`Score distribution of the window's ${stats.scores} scores in ${bins.length} bands`);
  chart(fig.box, {
    data: [bins.map((b) => (b.lower + b.upper) / 2), bins.map((b) => b.count)],
    series: [{ label: "Scores", color: "accent", bars: true }],
    time: false,
    xRange: [0, 100],
    xLabel: "score",
  });
  return card("Score distribution", fig.el);
}

function calibration(stats) {
  const bands = stats.conversion_by_band;
  if (!bands.length) {
    return card("Conversion by score band", h("p", { class: "muted" }, "No lead has an outcome yet: record outcomes to compare predicted and actual conversion."));
  }
  const fig = figure(`Predicted and actual conversion in ${bands.length} score bands with outcomes`);
  chart(fig.box, {
    data: [bands.map((b) => (b.lower + b.upper) / 2), bands.map((b) => b.expected * 100), bands.map((b) => b.actual * 100)],
    series: [{ label: "Expected %", color: "muted", dash: [6, 4] }, { label: "Actual %", color: "accent" }],
    time: false,
    xRange: [0, 100],
    yRange: [0, 100],
    xLabel: "score band",
  });
  const table = h("table", { class: "plain small" },
    h("thead", {}, h("tr", {}, ["Band", "Leads", "Expected", "Actual"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, bands.map((b) => h("tr", {}, h("td", {}, `${b.lower}–${b.upper}`), h("td", { class: "num" }, b.leads),
      h("td", { class: "num" }, fmtPct(b.expected, 1)), h("td", { class: "num" }, fmtPct(b.actual, 1))))));
  return card("Conversion by score band", fig.el, h("details", {}, h("summary", {}, "Figures"), table));
}

function throughput(stats) {
  const minutes = stats.scores_per_minute;
  const unit = stats.bucket_seconds === 60 ? "minute" : `${Math.round(stats.bucket_seconds / 60)} minutes`;
  if (!minutes.length) return card("Scores per minute", h("p", { class: "muted" }, "No scores in this window."));
  const fig = figure(`Scores per ${unit} over the window`);
  chart(fig.box, {
    data: [minutes.map((m) => Date.parse(m.minute) / 1000), minutes.map((m) => m.count)],
    series: [{ label: `Scores per ${unit}`, color: "accent", bars: minutes.length < 120 }],
  });
  return card("Scores per minute", fig.el);
}

function overTime() {
  if (series.length < 2) {
    return card("Latency and cache hits", h("p", { class: "muted" }, "Collecting: this chart fills as the page polls the server every 10 s."));
  }
  const ts = series.map((s) => s.t);
  const latency = figure("Scoring latency percentiles in ms, polled every 10 s");
  chart(latency.box, {
    data: [ts, series.map((s) => s.p50), series.map((s) => s.p95), series.map((s) => s.p99)],
    series: [{ label: "p50 ms", color: "accent" }, { label: "p95 ms", color: "warm" }, { label: "p99 ms", color: "hot" }],
    height: 180,
  });
  const cache = figure("Cache hit rate in %, polled every 10 s");
  chart(cache.box, {
    data: [ts, series.map((s) => (s.cache === null ? null : s.cache * 100))],
    series: [{ label: "Cache hit %", color: "cold" }],
    yRange: [0, 100],
    height: 160,
  });
  return card("Latency and cache hits", latency.el, cache.el);
}

function render(stats) {
  const classes = stats.classes;
  fill($("team-kpis"),
    kpi("Scores", stats.scores.toLocaleString("en-US"), "in the window"),
    kpi("Hot · warm · cold", `${classes.hot} · ${classes.warm} · ${classes.cold}`),
    kpi("Qualification rate", fmtPct(stats.qualification_rate), "of the window's scores"),
    kpi("Latency p95", stats.latency_ms.p95 === null ? "—" : `${fmtNum(stats.latency_ms.p95, 1)} ms`,
      `p50 ${fmtNum(stats.latency_ms.p50, 1)} · p99 ${fmtNum(stats.latency_ms.p99, 1)}`),
    kpi("Cache hit rate", fmtPct(stats.cache_hit_rate)));
  fill($("team-body"), distribution(stats), calibration(stats), pipeline(stats), throughput(stats), overTime());
}

async function poll() {
  const seconds = Number($("team-since").value);
  try {
    const stats = await api(`/api/v1/ml/stats${query({ since: new Date(Date.now() - seconds * 1000).toISOString() })}`);
    series.push({ t: Date.now() / 1000, ...stats.latency_ms, cache: stats.cache_hit_rate });
    if (series.length > SERIES_MAX) series.shift();
    last = stats;
    $("team-error").textContent = "";
    if (visible) render(stats);
  } catch (error) {
    $("team-error").textContent = `Could not load the team's figures: ${errorText(error)}`;
  }
}

export function start() {
  clearInterval(timer);
  poll();
  timer = setInterval(poll, POLL_MS);
}

/** Signed out: stop polling and forget the figures (the next sign-in may be another team). */
export function stop() {
  clearInterval(timer);
  timer = null;
  series.length = 0;
  last = null;
}

export function show(isVisible) {
  visible = isVisible;
  if (visible && last) render(last);
  else if (visible) poll();
}

export function setup() {
  $("team-since").addEventListener("change", poll);
}
