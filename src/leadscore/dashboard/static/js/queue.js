// The lead queue: GET /api/v1/ml/leads with the API's filters, sort and cursor paging, kept
// current by `lead_scored` events (a new score moves its row, a new lead appears).

import { api, query } from "./api.js";
import { $, ago, badge, errorText, fill, fmtMoney, fmtPct, fmtPoints, fmtScore, h, reasonText, signClass } from "./dom.js";
import { onLive } from "./live.js";

const PAGE = 50;
const RETRY_MS = 2000;
const leads = new Map(); // lead_id -> lead (the list's shape)
let order = []; // lead ids in display order
let nextCursor = null;
let loadedRows = 0; // rows the pages brought: live inserts beyond it push the last ones out
const TRIMMED = "trimmed"; // nextCursor after that: "Load more" reloads from the top
let filters = {};
let generation = 0; // a reload started later wins over an earlier one still answering
let pending = new Map(); // live updates waiting for the next frame
let frame = 0;
let refreshTimer = null;

const COMPARE = {
  score: (a) => a.ml_score,
  expected_commission: (a) => a.expected_commission ?? -Infinity,
  scored_at: (a) => Date.parse(a.scored_at),
  change: (a) => a.change_points ?? -Infinity,
};

function before(a, b) {
  const key = COMPARE[filters.sort] ?? COMPARE.score;
  const ka = key(a);
  const kb = key(b);
  if (ka !== kb) return ka > kb;
  return a.lead_id > b.lead_id; // the API's tie-break: lead id descending
}

function readFilters() {
  const form = $("filters");
  const since = form.scored_since.value;
  return {
    q: form.q.value.trim(),
    classification: form.classification.value,
    qualification: form.qualification.value,
    min_score: form.min_score.value,
    source: form.source.value.trim(),
    scored_since: since ? new Date(Date.now() - Number(since) * 1000).toISOString() : "",
    sort: form.sort.value,
  };
}

/** The list's current filters and sort, as the API's query parameters (exports take them). */
export const currentFilters = () => ({ ...filters });

/** Whether a lead belongs in the list under the current filters; null when we cannot tell. */
function matches(lead) {
  if (filters.classification && lead.classification !== filters.classification) return false;
  if (filters.qualification === "needed" && !lead.qualification_needed) return false;
  if (filters.qualification === "not_needed" && lead.qualification_needed) return false;
  if (filters.min_score !== "" && lead.ml_score < Number(filters.min_score)) return false;
  if (filters.source) {
    if (lead.source === undefined) return null;
    if ((lead.source ?? "").toLowerCase() !== filters.source.toLowerCase()) return false;
  }
  if (filters.q) {
    if (lead.email === undefined) return null;
    const q = filters.q.toLowerCase();
    const text = [lead.name, lead.email].filter(Boolean).join(" ").toLowerCase();
    if (!text.includes(q)) return false;
  }
  return true;
}

function reasonList(reasons) {
  return h("ul", { class: "reasons" }, (reasons ?? []).slice(0, 2).map((r) =>
    h("li", {}, h("span", { class: `pts ${signClass(r.points)}` }, fmtPoints(r.points)), " ", reasonText(r.text))));
}

function qualification(lead) {
  if (!lead.qualification_needed) return h("span", { class: "muted" }, "Not needed");
  return h("div", { class: "qual" }, h("span", { class: "badge ask" }, "Needed"),
    lead.top_question ? h("span", { class: "question" }, lead.top_question.question) : null);
}

function rowCells(lead) {
  const score = lead.ml_score;
  return [
    h("td", { class: "lead", "data-label": "Lead" },
      h("strong", {}, lead.name ?? lead.lead_id),
      h("span", { class: "muted small" }, [lead.source, lead.lead_id].filter(Boolean).join(" · "))),
    h("td", { class: "num score", "data-label": "Score" },
      h("span", { class: "score-value" }, fmtScore(score)),
      h("span", { class: `meter ${lead.classification}`, "aria-hidden": "true" },
        h("span", { style: { width: `${Math.max(0, Math.min(100, score))}%` } }))),
    h("td", { "data-label": "Class" }, badge(lead.classification)),
    h("td", { class: "num", "data-label": "Confidence" }, fmtPct(lead.ml_confidence)),
    h("td", { "data-label": "Qualification" }, qualification(lead)),
    h("td", { class: "reasons-cell", "data-label": "Top reasons" }, reasonList(lead.reasons)),
    h("td", { class: "num", "data-label": "Expected commission" }, fmtMoney(lead.expected_commission)),
    h("td", { class: `num change ${signClass(lead.change_points ?? 0)}`, "data-label": "Change" },
      lead.change_points === null || lead.change_points === undefined ? "new" : fmtPoints(lead.change_points)),
    h("td", { class: "when", "data-label": "Scored" }, h("time", { datetime: lead.scored_at }, ago(lead.scored_at))),
  ];
}

const rows = new Map(); // lead_id -> <tr>

function rowFor(lead) {
  let tr = rows.get(lead.lead_id);
  if (!tr) {
    tr = h("tr", { tabindex: "0", "data-id": lead.lead_id });
    rows.set(lead.lead_id, tr);
  }
  tr.setAttribute("aria-label", `${lead.name ?? lead.lead_id}, score ${fmtScore(lead.ml_score)}, ${lead.classification}`);
  tr.dataset.score = String(lead.ml_score);
  fill(tr, rowCells(lead));
  return tr;
}

function renderAll() {
  const body = $("queue-rows");
  fill(body, order.map((id) => rowFor(leads.get(id))));
  for (const id of rows.keys()) if (!leads.has(id)) rows.delete(id);
  renderFooter();
}

function renderFooter() {
  $("queue-empty").hidden = order.length > 0;
  $("queue-more").hidden = nextCursor === null;
  $("queue-count").textContent = `${order.length} lead${order.length === 1 ? "" : "s"} shown${nextCursor ? ", more on the server" : ""}`;
}

export async function reload() {
  filters = readFilters();
  const mine = ++generation;
  $("queue-error").textContent = "";
  try {
    performance.mark("queue:request");
    const page = await api(`/api/v1/ml/leads${query({ ...filters, limit: PAGE })}`);
    performance.mark("queue:response");
    if (mine !== generation) return;
    leads.clear();
    order = [];
    pending.clear();
    add(page);
    renderAll();
    performance.mark("queue:rendered");
    $("queue").dataset.loaded = String(mine);
  } catch (error) {
    if (mine !== generation) return;
    $("queue-error").textContent = `Could not load leads: ${errorText(error)}`;
    // 503: the server is catching up (or its database is back soon): try again by itself.
    if (error.status === 503) setTimeout(() => mine === generation && reload(), RETRY_MS);
  }
}

function add(page) {
  for (const lead of page.leads) {
    if (!leads.has(lead.lead_id)) order.push(lead.lead_id);
    leads.set(lead.lead_id, lead);
  }
  nextCursor = page.next_cursor;
  loadedRows = order.length;
}

/** Keep the list as long as the pages made it: a stream of new leads must not grow it forever. */
function trim() {
  while (order.length > Math.max(PAGE, loadedRows)) {
    const id = order.pop();
    leads.delete(id);
    rows.get(id)?.remove();
    rows.delete(id);
    nextCursor = TRIMMED;
  }
}

async function more() {
  if (nextCursor === TRIMMED) {
    await reload(); // the trimmed rows' place is no cursor's: start again from the top
    return;
  }
  const mine = generation;
  try {
    const page = await api(`/api/v1/ml/leads${query({ ...filters, limit: PAGE, cursor: nextCursor })}`);
    if (mine !== generation) return;
    const body = $("queue-rows");
    const known = new Set(order);
    add(page);
    for (const lead of page.leads) if (!known.has(lead.lead_id)) body.append(rowFor(lead));
    renderFooter();
  } catch (error) {
    $("queue-error").textContent = `Could not load more leads: ${errorText(error)}`;
  }
}

/** A `lead_scored` event as a list row, keeping what the event does not carry (email). */
function fromEvent(event, previous) {
  const d = event.data;
  return {
    ...(previous ?? {}),
    lead_id: d.lead_id,
    name: d.name ?? previous?.name ?? null,
    source: d.source ?? previous?.source ?? null,
    ml_score: d.ml_score,
    classification: d.classification,
    ml_confidence: d.confidence,
    qualification_needed: d.qualification_needed,
    top_question: d.top_question ?? null,
    reasons: d.reasons.slice(0, 2).map((r) => ({ text: r.text, points: r.points })),
    expected_commission: d.expected_commission,
    change_points: d.change ? d.change.points : null,
    scored_at: event.timestamp,
    model_version: d.model_version,
  };
}

function onScored(event) {
  pending.set(event.data.lead_id, event);
  if (!frame) frame = requestAnimationFrame(applyPending);
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(reload, 1000);
}

function applyPending() {
  frame = 0;
  const started = performance.now();
  const body = $("queue-rows");
  if (!body.isConnected) return;
  const focused = document.activeElement;
  for (const event of pending.values()) {
    const id = event.data.lead_id;
    const previous = leads.get(id);
    const lead = fromEvent(event, previous);
    const fits = matches(lead);
    if (fits === null) {
      scheduleRefresh(); // a filter the event cannot answer (source, search): ask the server
      continue;
    }
    if (previous) order.splice(order.indexOf(id), 1);
    if (!fits) {
      leads.delete(id);
      rows.get(id)?.remove();
      rows.delete(id);
      continue;
    }
    let at = order.findIndex((other) => before(lead, leads.get(other)));
    if (at === -1) at = order.length;
    if (at === order.length && nextCursor !== null) {
      // It ranks below every loaded row: it belongs to a page not loaded yet.
      leads.delete(id);
      rows.get(id)?.remove();
      rows.delete(id);
      continue;
    }
    leads.set(id, lead);
    order.splice(at, 0, id);
    const tr = rowFor(lead);
    const next = order[at + 1] ? rows.get(order[at + 1]) : null;
    if (tr.nextSibling !== next || tr.parentNode !== body) body.insertBefore(tr, next);
    flash(tr);
  }
  pending.clear();
  trim();
  if (focused && focused.isConnected && focused !== document.activeElement) focused.focus();
  renderFooter();
  performance.measure("queue:live", { start: started });
}

const calm = matchMedia("(prefers-reduced-motion: reduce)");

const MAX_FLASHING = 8; // under a burst, a few highlights say "live"; more only cost frames
let flashing = 0;

/** Highlight a changed row for a moment (no forced layout, unlike restarting a CSS class). */
function flash(tr) {
  if (calm.matches || flashing >= MAX_FLASHING) return;
  flashing += 1;
  const highlight = tr.animate([{ backgroundColor: "var(--flash)" }, { backgroundColor: "transparent" }], { duration: 1200, easing: "ease-out" });
  highlight.onfinish = highlight.oncancel = () => { flashing -= 1; };
}

function open(tr) {
  location.hash = `#/lead/${encodeURIComponent(tr.dataset.id)}`;
}

function onKey(event) {
  const tr = event.target.closest("tr[data-id]");
  if (!tr) return;
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    open(tr);
  } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    event.preventDefault();
    const other = event.key === "ArrowDown" ? tr.nextElementSibling : tr.previousElementSibling;
    other?.focus();
  }
}

function tickTimes() {
  const now = Date.now();
  for (const el of document.querySelectorAll("#queue-rows time")) el.textContent = ago(el.dateTime, now);
}

export function setup() {
  const form = $("filters");
  let typing = null;
  form.addEventListener("change", reload);
  form.addEventListener("input", (event) => {
    if (event.target.type !== "search" && event.target.type !== "number" && event.target.name !== "source") return;
    clearTimeout(typing);
    typing = setTimeout(reload, 300);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    reload();
  });
  $("queue-more").addEventListener("click", more);
  const body = $("queue-rows");
  body.addEventListener("click", (event) => {
    const tr = event.target.closest("tr[data-id]");
    if (tr) open(tr);
  });
  body.addEventListener("keydown", onKey);
  onLive("lead_scored", onScored);
  onLive("resync", reload);
  setInterval(tickTimes, 30000);
}
