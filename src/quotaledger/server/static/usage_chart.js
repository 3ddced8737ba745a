// A stacked bar chart of spending per UTC day and model, drawn as SVG by hand: no chart
// library, nothing loaded from anywhere. Colours come from the stylesheet (series-N classes),
// so they follow light and dark mode; every bar names its day, model and amount.

import { dollars } from "./api.js";

const SVG = "http://www.w3.org/2000/svg";
const DAY = 86_400;
const SERIES = 7;  // the 7 costliest models get their own colour; the rest are "Other"
const [WIDTH, HEIGHT] = [720, 240];
const PLOT = { left: 64, right: 8, top: 10, bottom: 26 };

// rows: /api/data/self's {model_name, created_at (hour), count, quota}; days: how many UTC
// days, ending with the day of `now` (seconds).
export function dailyByModel(rows, days, now) {
  const lastDay = Math.floor(now / DAY);
  const firstDay = lastDay - days + 1;
  const totals = new Map();
  for (const row of rows) totals.set(row.model_name, (totals.get(row.model_name) || 0) + row.quota);
  const ranked = [...totals.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const named = ranked.slice(0, ranked.length > SERIES + 1 ? SERIES : SERIES + 1).map(([m]) => m);
  const series = ranked.length > named.length ? [...named, "Other"] : named;
  const grid = Array.from({ length: days }, (_, index) => ({
    day: firstDay + index, quota: new Array(series.length).fill(0), count: 0,
  }));
  for (const row of rows) {
    const slot = grid[Math.floor(row.created_at / DAY) - firstDay];
    if (!slot) continue;
    const index = named.includes(row.model_name) ? named.indexOf(row.model_name) : series.length - 1;
    slot.quota[index] += row.quota;
    slot.count += row.count;
  }
  return { series, grid, totals: series.map((_, i) => grid.reduce((sum, d) => sum + d.quota[i], 0)) };
}

export function drawChart(container, legend, data) {
  const total = data.totals.reduce((a, b) => a + b, 0);
  const svg = node("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-labelledby": "usage-svg-title usage-svg-desc", class: "chart-svg" });
  svg.append(
    node("title", { id: "usage-svg-title" }, "Spending per day by model, last 30 days"),
    node("desc", { id: "usage-svg-desc" }, describe(data, total)),
  );
  const highest = Math.max(...data.grid.map((d) => d.quota.reduce((a, b) => a + b, 0)));
  const top = niceCeiling(Math.max(highest, 5_000));  // at least a cent: an empty chart has a scale
  drawAxes(svg, data.grid, top);
  drawBars(svg, data, top);
  container.replaceChildren(svg);
  legend.replaceChildren(...data.series.map((name, index) => legendItem(name, index, data.totals[index])));
}

function describe(data, total) {
  if (total === 0) return "No spending in these 30 days.";
  const parts = data.series.map((name, i) => `${name} ${dollars(data.totals[i])}`);
  return `${dollars(total)} in all: ${parts.join(", ")}.`;
}

function drawAxes(svg, grid, top) {
  const plotHeight = HEIGHT - PLOT.top - PLOT.bottom;
  for (let step = 0; step <= 4; step += 1) {
    const y = PLOT.top + plotHeight - (plotHeight * step) / 4;
    svg.append(node("line", { x1: PLOT.left, x2: WIDTH - PLOT.right, y1: y, y2: y, class: step ? "grid" : "baseline" }));
    svg.append(node("text", { x: PLOT.left - 6, y: y + 4, "text-anchor": "end", class: "axis" }, dollars(Math.round((top * step) / 4))));
  }
  const band = (WIDTH - PLOT.left - PLOT.right) / grid.length;
  grid.forEach((slot, index) => {
    if ((grid.length - 1 - index) % 5 !== 0) return;  // every fifth day, ending with today
    const x = PLOT.left + band * (index + 0.5);
    svg.append(node("text", { x, y: HEIGHT - 8, "text-anchor": "middle", class: "axis" }, dayLabel(slot.day)));
  });
}

function drawBars(svg, data, top) {
  const plotHeight = HEIGHT - PLOT.top - PLOT.bottom;
  const band = (WIDTH - PLOT.left - PLOT.right) / data.grid.length;
  for (const [index, slot] of data.grid.entries()) {
    let base = PLOT.top + plotHeight;
    for (const [series, quota] of slot.quota.entries()) {
      if (quota <= 0) continue;
      const height = Math.max((quota / top) * plotHeight, 1);
      base -= height;
      const bar = node("rect", {
        x: PLOT.left + band * index + band * 0.15, y: base, width: band * 0.7, height,
        class: `bar series-${series}`,
      });
      bar.append(node("title", {}, `${dayLabel(slot.day, true)} · ${data.series[series]}: ${dollars(quota)}`));
      svg.append(bar);
    }
  }
}

function legendItem(name, index, quota) {
  const item = document.createElement("li");
  const swatch = document.createElement("span");
  swatch.className = `swatch series-${index}`;
  swatch.setAttribute("aria-hidden", "true");
  const label = document.createElement("span");
  label.textContent = `${name} `;
  const amount = document.createElement("span");
  amount.className = "muted";
  amount.textContent = dollars(quota);
  item.append(swatch, label, amount);
  return item;
}

// 0.0731 USD -> the next of 1, 2, 2.5, 5 x 10^n above it, in quota.
function niceCeiling(quota) {
  const magnitude = 10 ** Math.floor(Math.log10(quota));
  const step = [1, 2, 2.5, 5, 10].find((s) => s * magnitude >= quota);
  return step * magnitude;
}

function dayLabel(day, year = false) {
  const text = new Date(day * DAY * 1000).toISOString().slice(0, 10);
  return year ? text : text.slice(5);
}

function node(tag, attributes, text) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}
