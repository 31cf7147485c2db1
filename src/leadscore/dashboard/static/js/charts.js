// Charts with the vendored uPlot, loaded on first use so the queue paints without it; colours
// come from the stylesheet's variables, so both themes apply (charts redraw when it changes).

import { h } from "./dom.js";

let uPlotModule = null;
const live = new Set(); // {plot, el, make}

async function uPlot() {
  uPlotModule ??= import("../vendor/uplot/uPlot.esm.js").then((m) => m.default);
  return uPlotModule;
}

export function color(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(`--${name}`).trim();
}

const resize = new ResizeObserver((entries) => {
  for (const entry of entries) {
    for (const item of live) {
      if (item.el === entry.target && item.plot) {
        const width = Math.floor(entry.contentRect.width);
        if (width > 0 && width !== item.plot.width) item.plot.setSize({ width, height: item.height });
      }
    }
  }
});

matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
  for (const item of live) draw(item);
});

// Frames to wait for a chart's box to be placed in the page (a view may build its cards
// before it has fetched everything and attaches them).
const ATTACH_FRAMES = 120;

async function draw(item) {
  const U = await uPlot();
  if (item.plot) item.plot.destroy();
  if (!item.el.isConnected) {
    item.waited = (item.waited ?? 0) + 1;
    if (!item.plot && item.waited <= ATTACH_FRAMES) {
      requestAnimationFrame(() => draw(item));
      return;
    }
    live.delete(item);
    resize.unobserve(item.el);
    return;
  }
  const width = Math.max(240, Math.floor(item.el.clientWidth || 320));
  item.plot = new U(item.make(U, width), item.data, item.el);
}

function axes(opts) {
  const text = color("muted");
  const grid = { stroke: color("grid"), width: 1 };
  const base = { stroke: text, grid, ticks: grid, font: "12px system-ui, sans-serif" };
  return [
    { ...base, ...(opts.xValues ? { values: opts.xValues } : {}), ...(opts.xLabel ? { label: opts.xLabel } : {}) },
    { ...base, size: 52, ...(opts.yValues ? { values: opts.yValues } : {}), ...(opts.yLabel ? { label: opts.yLabel } : {}) },
  ];
}

/**
 * A chart in `el`: `data` is uPlot's [xs, ...ys]; `series` gives each y its label, colour
 * variable and style (`bars`, `points`, `dash`).
 */
export function chart(el, { data, series, time = true, height = 220, yRange = null, xRange = null, ...opts }) {
  for (const old of live) {
    if (old.plot && !old.el.isConnected) {
      old.plot?.destroy();
      resize.unobserve(old.el);
      live.delete(old);
    }
  }
  const item = { el, data, height, plot: null };
  item.make = (U, width) => ({
    width,
    height,
    scales: {
      x: { time, ...(xRange ? { range: xRange } : {}) },
      y: yRange ? { range: yRange } : {},
    },
    legend: { live: false },
    cursor: { drag: { x: false, y: false } },
    axes: axes(opts),
    series: [
      {},
      ...series.map((s) => ({
        label: s.label,
        stroke: color(s.color),
        width: s.bars ? 0 : 2,
        fill: s.bars ? color(s.color) : undefined,
        dash: s.dash,
        points: { show: s.points ?? !s.bars, size: 6, fill: color(s.color) },
        paths: s.bars ? U.paths.bars({ size: [0.8, 60] }) : undefined,
        spanGaps: true,
        value: s.value,
      })),
    ],
  });
  live.add(item);
  resize.observe(el);
  draw(item);
  return item;
}

/** A figure: a chart box with a caption that says in words what the chart shows. */
export function figure(caption) {
  const box = h("div", { class: "chart", role: "img", "aria-label": caption });
  return { box, el: h("figure", {}, box, h("figcaption", { class: "muted small" }, caption)) };
}
