// The model view: what serves and how good its card says it is, live calibration, drift,
// the champion/challenger trial (admins), and model events from the registry and the socket.

import { api, isAdmin } from "./api.js";
import { $, card, errorText, fill, fmtNum, fmtPct, h, humanize, scroller, timeEl } from "./dom.js";
import { chart, figure } from "./charts.js";
import { onLive } from "./live.js";

const liveEvents = []; // model_status events received since sign-in, newest first
let visible = false;
let loading = null;

function metricsTable(metrics) {
  const heads = Object.entries(metrics ?? {});
  if (!heads.length) return h("p", { class: "muted" }, "The card has no held-out metrics.");
  return scroller(h("table", { class: "plain" },
    h("thead", {}, h("tr", {}, ["Head", "AUC", "Brier", "ECE", "Log loss", "Held-out leads", "Positive rate"].map((t, i) => h("th", { scope: "col", class: i ? "num" : null }, t)))),
    h("tbody", {}, heads.map(([head, m]) => h("tr", {},
      h("th", { scope: "row" }, humanize(head)), h("td", { class: "num" }, fmtNum(m.auc, 3)),
      h("td", { class: "num" }, fmtNum(m.brier, 3)), h("td", { class: "num" }, fmtNum(m.ece, 3)),
      h("td", { class: "num" }, fmtNum(m.log_loss, 3)), h("td", { class: "num" }, Number(m.n).toLocaleString("en-US")),
      h("td", { class: "num" }, fmtPct(m.positive_rate, 1)))))));
}

function serving(status) {
  const t = status.thresholds;
  return card("Serving model",
    h("dl", { class: "pairs" },
      h("dt", {}, "Version"), h("dd", {}, h("code", {}, status.version)),
      h("dt", {}, "Algorithm"), h("dd", {}, status.algorithm ?? "—"),
      h("dt", {}, "Trained"), h("dd", {}, timeEl(status.trained_at)),
      h("dt", {}, "Training data"), h("dd", {}, status.training_data?.description || "—"),
      h("dt", {}, "Thresholds"), h("dd", {}, `hot ≥ ${t.hot}, warm ≥ ${t.warm}, qualify below ${fmtPct(t.escalation_confidence)} confidence`),
      h("dt", {}, "Predictions"), h("dd", {}, `${status.traffic.predictions.toLocaleString("en-US")} since the server started`)),
    h("h3", {}, "Held-out metrics (model card)"), metricsTable(status.metrics));
}

function calibration(status) {
  const versions = Object.entries(status.live_quality?.versions ?? {});
  const ready = versions.filter(([, q]) => q.reliability);
  if (!ready.length) {
    const ece = status.metrics?.conversion?.ece;
    return card("Calibration",
      h("p", { class: "muted" }, "No live calibration yet: it needs outcomes of both kinds for scored leads."),
      h("p", {}, `Held-out expected calibration error of the conversion head: ${fmtNum(ece, 3)}.`));
  }
  const [version, quality] = ready.find(([v]) => v === status.version) ?? ready[0];
  const bins = quality.reliability;
  const fig = figure(`Calibration of ${version} on ${quality.n} leads with outcomes: observed against predicted conversion`);
  chart(fig.box, {
    data: [bins.map((b) => b.predicted * 100), bins.map((b) => b.predicted * 100), bins.map((b) => b.observed * 100)],
    series: [{ label: "Perfect", color: "muted", dash: [6, 4], points: false }, { label: "Observed %", color: "accent" }],
    time: false,
    xRange: [0, 100],
    yRange: [0, 100],
    xLabel: "predicted %",
  });
  return card("Calibration", fig.el,
    h("p", { class: "small" }, `Live AUC ${fmtNum(quality.auc, 3)}, Brier ${fmtNum(quality.brier, 3)}, ECE ${fmtNum(quality.ece, 3)} on ${quality.n} leads.`));
}

function drift(report) {
  const alert = report.alert
    ? h("span", { class: "badge hot" }, "Drift alert")
    : h("span", { class: "badge ok" }, "No drift");
  if (!report.feature_psi) return card("Drift", h("p", {}, alert), h("p", { class: "muted" }, report.detail ?? "No drift report yet."));
  const max = Math.max(report.threshold * 2, ...Object.values(report.feature_psi));
  const drifted = new Set(report.drifted_features);
  return card("Drift",
    h("p", {}, alert, " ", `Score PSI ${fmtNum(report.score_psi, 3)} over ${report.rows} recent leads (threshold ${report.threshold}).`),
    h("ul", { class: "hbars psi" }, Object.entries(report.feature_psi).slice(0, 12).map(([name, value]) =>
      h("li", {}, h("span", { class: "hbar-label" }, humanize(name)),
        h("span", { class: "track", "aria-hidden": "true" },
          h("span", { class: `bar ${drifted.has(name) ? "hot" : "cold"}`, style: { width: `${(100 * value) / max}%` } }),
          h("span", { class: "mark", style: { left: `${(100 * report.threshold) / max}%` } })),
        h("span", { class: "num" }, fmtNum(value, 3))))),
    h("p", { class: "muted small" }, "PSI per feature (12 largest); the mark is the alert threshold."));
}

function trial(state, comparison) {
  const body = [h("dl", { class: "pairs" },
    h("dt", {}, "Mode"), h("dd", {}, state.mode === "off" ? "no trial" : `${state.mode}${state.mode === "split" ? `, ${fmtPct(state.share)} to the challenger` : ""}`),
    h("dt", {}, "Champion"), h("dd", {}, h("code", {}, state.champion ?? "—")),
    h("dt", {}, "Challenger"), h("dd", {}, state.challenger ? h("code", {}, state.challenger) : "none"),
    state.started_at ? [h("dt", {}, "Since"), h("dd", {}, timeEl(state.started_at), ` by ${state.actor}`)] : null)];
  if (comparison) {
    const c = comparison;
    body.push(h("h3", {}, `Comparison on ${c.leads} leads with outcomes`),
      scroller(h("table", { class: "plain" },
        h("thead", {}, h("tr", {}, ["", "Leads", "AUC", "Brier", "ECE"].map((t, i) => h("th", { scope: "col", class: i ? "num" : null }, t)))),
        h("tbody", {}, [["Champion", c.champion], ["Challenger", c.challenger]].map(([label, q]) => h("tr", {},
          h("th", { scope: "row" }, label), h("td", { class: "num" }, q.n), h("td", { class: "num" }, fmtNum(q.auc, 3)),
          h("td", { class: "num" }, fmtNum(q.brier, 3)), h("td", { class: "num" }, fmtNum(q.ece, 3))))))),
      h("p", {}, h("span", { class: `badge ${c.challenger_not_worse ? "ok" : "hot"}` }, c.challenger_not_worse ? "Challenger not worse" : "Keep the champion"), " ", c.reason));
  }
  return card("Trial", ...body);
}

function events(history, jobs) {
  const items = [
    ...liveEvents.map((e) => ({ at: e.timestamp, text: `${humanize(e.data.status)}: ${e.data.model_version ?? ""}`, live: true })),
    ...history.map((c) => ({ at: c.at, text: `${humanize(c.action)} ${c.from_version ? `${c.from_version} → ` : ""}${c.to_version} (${c.actor}${c.forced ? ", forced" : ""})` })),
    ...jobs.map((j) => ({ at: j.finished_at ?? j.started_at, text: `Training ${j.state}${j.version ? `: ${j.version}` : ""}${j.error ? ` — ${j.error}` : ""}` })),
  ].sort((a, b) => Date.parse(b.at) - Date.parse(a.at)).slice(0, 20);
  if (!items.length) return card("Model events", h("p", { class: "muted" }, "No model events yet."));
  return card("Model events", h("ol", { class: "events" }, items.map((item) =>
    h("li", {}, timeEl(item.at), " ", item.text, item.live ? h("span", { class: "badge live-badge" }, "live") : null))));
}

async function optional(path) {
  try {
    return await api(path);
  } catch (error) {
    return { error };
  }
}

export async function load() {
  $("model-error").textContent = "";
  const [status, report] = await Promise.all([api("/api/v1/ml/model/status"), api("/api/v1/ml/model/drift")]);
  const cards = [serving(status), calibration(status), drift(report)];
  if (isAdmin()) {
    const [state, jobs, detail] = await Promise.all([
      api("/api/v1/ml/models/trial"), api("/api/v1/ml/models/jobs"),
      api(`/api/v1/ml/models/${encodeURIComponent(status.version)}`),
    ]);
    const comparison = state.challenger ? await optional("/api/v1/ml/models/compare") : null;
    cards.push(trial(state, comparison && !comparison.error ? comparison : null), events(detail.history, jobs));
  } else {
    cards.push(events([], []), card("Registry", h("p", { class: "muted" }, "Versions, trials and training jobs are shown to admins.")));
  }
  fill($("model-body"), cards);
}

export function show(isVisible) {
  visible = isVisible;
  if (!visible) return;
  loading ??= load().catch((error) => {
    $("model-error").textContent = `Could not load the model: ${errorText(error)}`;
  }).finally(() => { loading = null; });
}

export function setup() {
  onLive("model_status", (event) => {
    liveEvents.unshift(event);
    liveEvents.length = Math.min(liveEvents.length, 50);
    if (visible) show(true);
  });
}

export function reset() {
  liveEvents.length = 0;
  fill($("model-body"));
}
