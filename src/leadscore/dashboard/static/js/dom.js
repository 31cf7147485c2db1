// Small DOM and formatting helpers: elements are built with textContent only (no HTML from data).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "style") Object.assign(el.style, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const $ = (id) => document.getElementById(id);

const money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", maximumFractionDigits: 0 });
export const fmtMoney = (v) => (v === null || v === undefined ? "—" : money.format(v));
export const fmtScore = (v) => (v === null || v === undefined ? "—" : v.toFixed(1));
export const fmtPct = (v, digits = 0) => (v === null || v === undefined ? "—" : `${(v * 100).toFixed(digits)} %`);
export const fmtNum = (v, digits = 2) => (v === null || v === undefined ? "—" : Number(v).toFixed(digits));
const tenth = (v) => Math.round(v * 10) / 10; // as shown: -0.04 shows, and counts, as 0
export const fmtPoints = (v) => (v === null || v === undefined ? "—" : `${tenth(v) > 0 ? "+" : tenth(v) < 0 ? "−" : "±"}${Math.abs(tenth(v)).toFixed(1)}`);
export const signClass = (v) => (tenth(v) > 0 ? "up" : tenth(v) < 0 ? "down" : "flat");

export function ago(iso, now = Date.now()) {
  if (!iso) return "—";
  const seconds = Math.max(0, (now - Date.parse(iso)) / 1000);
  if (seconds < 45) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

export function timeEl(iso) {
  return h("time", { datetime: iso, title: iso ? new Date(iso).toLocaleString() : null }, ago(iso));
}

export function badge(classification) {
  return h("span", { class: `badge ${classification}` }, classification ? humanize(classification) : "—");
}

/** The reason's sentence without its trailing points, which the page shows in colour. */
export function reasonText(text) {
  return text.replace(/:\s*[+−-]?\d+(\.\d+)?\s*points?$/, "");
}

export function humanize(name) {
  const text = String(name).replaceAll("_", " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** A titled card; `body` is appended under the heading. */
export function card(title, ...body) {
  const id = `card-${title.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), ...body);
}

/** A table that scrolls sideways inside its card instead of widening the page. */
export function scroller(table) {
  return h("div", { class: "scroll" }, table);
}

export function errorText(error) {
  return error && error.message ? error.message : String(error);
}
