// The qualification view: the team's escalation queue (GET /api/v1/ml/escalations), with Claim
// and a Resolve form per lead; agents' answers re-score the lead. Reloaded on `escalation` events.

import { api, current, query } from "./api.js";
import { $, ago, badge, card, errorText, fill, fmtPct, fmtScore, h, humanize } from "./dom.js";
import { onLive } from "./live.js";

const RELOAD_MS = 300; // escalation events of one burst reload the list once
let visible = false;
let pending = null;
let generation = 0;

const canAct = () => current() && current().role !== "viewer";
const REASONS = { low_confidence: "Low confidence", thin_data: "Too little known" };

function field(id, label, control) {
  return h("div", { class: "field" }, h("label", { for: id }, label), control);
}

function resolveForm(entry) {
  const id = (name) => `q-${entry.id}-${name}`;
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "resolve", "aria-label": `Resolve ${entry.name ?? entry.lead_id}` },
    h("div", { class: "answers" },
      field(id("pre"), "Pre-approved", h("select", { id: id("pre"), name: "pre_approved" },
        h("option", { value: "" }, "Not asked"), h("option", { value: "true" }, "Yes"), h("option", { value: "false" }, "No"))),
      field(id("timeline"), "Timeline", h("input", { id: id("timeline"), name: "timeline", maxlength: 200, placeholder: "1-3 months" })),
      field(id("budget"), "Budget", h("input", { id: id("budget"), name: "budget", maxlength: 200, placeholder: "500k-750k" })),
      field(id("financing"), "Financing", h("input", { id: id("financing"), name: "financing", maxlength: 60, placeholder: "cash, mortgage" })),
      field(id("outcome"), "Outcome", h("select", { id: id("outcome"), name: "outcome" },
        h("option", { value: "" }, "None yet"), ["converted", "closed", "lost"].map((o) => h("option", { value: o }, humanize(o)))))),
    field(id("notes"), "Notes", h("textarea", { id: id("notes"), name: "notes", rows: 2, maxlength: 4000 })),
    h("button", { type: "submit" }, "Resolve"),
    error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const body = {};
    if (data.get("pre_approved")) body.pre_approved = data.get("pre_approved") === "true";
    for (const name of ["timeline", "budget", "financing", "notes"]) {
      const value = String(data.get(name) ?? "").trim();
      if (value) body[name] = value;
    }
    if (data.get("outcome")) body.outcome = { outcome: data.get("outcome"), occurred_at: new Date().toISOString() };
    const button = form.querySelector("button");
    button.disabled = true;
    error.textContent = "";
    try {
      const resolved = await api(`/api/v1/ml/escalations/${entry.id}/resolve`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      form.replaceWith(h("p", { class: "resolved-note", role: "status" },
        `Resolved: re-scored ${fmtScore(entry.ml_score)} → ${fmtScore(resolved.score.ml_score)}`,
        resolved.score.qualification.needed ? " (still unsure)" : " (confident now)"));
      schedule();
    } catch (failure) {
      error.textContent = `Could not resolve: ${errorText(failure)}`;
      button.disabled = false;
    }
  });
  return form;
}

function claimButton(entry) {
  const error = h("p", { class: "error", role: "alert" });
  const button = h("button", { type: "button", class: "secondary" }, "Claim");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await api(`/api/v1/ml/escalations/${entry.id}/claim`, { method: "POST" });
      schedule();
    } catch (failure) {
      error.textContent = `Could not claim: ${errorText(failure)}`;
      button.disabled = false;
    }
  });
  return h("div", { class: "claim" }, button, error);
}

function entryCard(entry) {
  const title = entry.name ?? entry.lead_id;
  const status = entry.status === "resolved" ? "ok" : entry.status === "claimed" ? "warm" : "ask";
  return h("article", { class: "card escalation", "data-id": entry.id, "data-lead": entry.lead_id, "aria-label": title },
    h("div", { class: "esc-head" },
      h("h2", {}, h("a", { href: `#/lead/${encodeURIComponent(entry.lead_id)}` }, title)),
      h("span", { class: `badge ${status}` }, humanize(entry.status)),
      badge(entry.classification)),
    h("dl", { class: "pairs" },
      h("dt", {}, "Score"), h("dd", {}, entry.ml_score === entry.ml_score_at_open
        ? fmtScore(entry.ml_score) : `${fmtScore(entry.ml_score_at_open)} → ${fmtScore(entry.ml_score)}`),
      h("dt", {}, "Confidence"), h("dd", {}, fmtPct(entry.ml_confidence)),
      h("dt", {}, "Why"), h("dd", {}, entry.reasons.map((r) => REASONS[r] ?? humanize(r)).join(", ") || "—"),
      h("dt", {}, "Waiting"), h("dd", {}, ago(entry.opened_at)),
      entry.claimed_by ? [h("dt", {}, "Claimed by"), h("dd", {}, entry.claimed_by)] : null,
      entry.resolved_by ? [h("dt", {}, "Resolved by"), h("dd", {}, entry.resolved_by)] : null,
      entry.llm_state ? [h("dt", {}, "Claude"), h("dd", {}, humanize(entry.llm_state))] : null,
      entry.notes ? [h("dt", {}, "Notes"), h("dd", {}, entry.notes)] : null),
    entry.ask_next.length
      ? h("div", {}, h("h3", {}, "Ask"), h("ol", { class: "asks" }, entry.ask_next.map((q) =>
        h("li", {}, q.question, h("span", { class: "muted small" }, ` yes ${fmtScore(q.score_if_yes)} · no ${fmtScore(q.score_if_no)}`)))))
      : null,
    entry.status === "open" && canAct() ? claimButton(entry) : null,
    entry.status !== "resolved" && canAct() ? resolveForm(entry) : null);
}

async function load() {
  const mine = ++generation;
  const status = $("qualify-status").value;
  try {
    const page = await api(`/api/v1/ml/escalations${query({ status, limit: 100 })}`);
    if (mine !== generation) return;
    $("qualify-error").textContent = "";
    const entries = page.escalations;
    $("qualify-count").textContent = `${entries.length}${page.next_cursor ? "+" : ""} ${entries.length === 1 ? "lead" : "leads"}`;
    fill($("qualify-body"), entries.length
      ? entries.map(entryCard)
      : card("Nothing to qualify", h("p", { class: "muted" }, "Leads whose score needs qualifying appear here with the questions to ask.")));
  } catch (failure) {
    $("qualify-error").textContent = `Could not load the queue: ${errorText(failure)}`;
  }
}

function schedule() {
  clearTimeout(pending);
  pending = setTimeout(() => visible && load(), RELOAD_MS);
}

export function show(isVisible) {
  visible = isVisible;
  if (visible) load();
}

export function setup() {
  $("qualify-status").addEventListener("change", load);
  onLive("escalation", (event) => {
    if (event.data.status !== "recommended") schedule();
  });
  onLive("resync", schedule);
}
