// Tiny inline-SVG charts for the dashboard (no libraries, no network): bars and a time series.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const TIER_COLORS = ["#2f7ed8", "#e4572e", "#29a36a", "#9b5de5", "#f3a712", "#555"];

function svg(tag, attrs, text) {
  const n = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
  if (text !== undefined) n.textContent = text;
  return n;
}

function tierColor(name, names) {
  const i = names.indexOf(name);
  return TIER_COLORS[(i < 0 ? names.length : i) % TIER_COLORS.length];
}

// bars: [{label, value, color?}] -> an SVG with one labelled horizontal bar each.
function barChart(bars, fmt) {
  const rowH = 24, labelW = 110, w = 420, h = Math.max(1, bars.length) * rowH + 6;
  const root = svg("svg", {viewBox: `0 0 ${w} ${h}`, class: "chart", role: "img"});
  const max = Math.max(...bars.map(b => b.value), 0) || 1;
  if (!bars.length) root.appendChild(svg("text", {x: 4, y: 18, class: "muted"}, "no data yet"));
  bars.forEach((b, i) => {
    const y = i * rowH + 4, bw = Math.max(1, (w - labelW - 90) * b.value / max);
    root.appendChild(svg("text", {x: 0, y: y + 15}, b.label));
    root.appendChild(svg("rect", {x: labelW, y, width: bw, height: rowH - 8, rx: 3, fill: b.color || TIER_COLORS[0]}));
    root.appendChild(svg("text", {x: labelW + bw + 6, y: y + 15}, fmt(b.value)));
  });
  return root;
}

// points: [{t (ms epoch), v, series}] -> dots per series over time, log-free linear y axis with 3 ticks.
function timeSeries(points, seriesNames, unit) {
  const w = 420, h = 160, left = 44, bottom = 18;
  const root = svg("svg", {viewBox: `0 0 ${w} ${h}`, class: "chart", role: "img"});
  if (!points.length) {
    root.appendChild(svg("text", {x: 4, y: 18, class: "muted"}, "no requests yet"));
    return root;
  }
  const t0 = Math.min(...points.map(p => p.t)), t1 = Math.max(...points.map(p => p.t)) || t0 + 1;
  const vmax = Math.max(...points.map(p => p.v)) * 1.1 || 1;
  const x = t => left + (w - left - 6) * (t1 === t0 ? 0.5 : (t - t0) / (t1 - t0));
  const y = v => (h - bottom) - (h - bottom - 6) * v / vmax;
  for (const frac of [0, 0.5, 1]) {
    const v = vmax * frac;
    root.appendChild(svg("line", {x1: left, x2: w, y1: y(v), y2: y(v), class: "grid"}));
    root.appendChild(svg("text", {x: 0, y: y(v) + 4}, v >= 100 ? v.toFixed(0) : v.toFixed(1)));
  }
  root.appendChild(svg("text", {x: left, y: h - 2, class: "muted"}, `${unit}, last ${points.length} rounds`));
  for (const name of seriesNames) {
    const ps = points.filter(p => p.series === name);
    if (ps.length > 1) {
      root.appendChild(svg("polyline", {points: ps.map(p => `${x(p.t)},${y(p.v)}`).join(" "), fill: "none",
        stroke: tierColor(name, seriesNames), "stroke-width": 1.5, opacity: 0.6}));
    }
    for (const p of ps) root.appendChild(svg("circle", {cx: x(p.t), cy: y(p.v), r: 3, fill: tierColor(name, seriesNames)}));
  }
  return root;
}
