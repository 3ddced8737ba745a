// Dashboard: totals, errors by class, a bar chart of quota per UTC day (SVG drawn here),
// and the breakdowns by model and by channel, for today, 7 or 30 days.

import { dollars, getJSON, utcMinute } from "../api.js";
import { cell, fillRows, report } from "./common.js";

const SVG = "http://www.w3.org/2000/svg";
const [WIDTH, HEIGHT, BOTTOM] = [720, 160, 20];
const count = (n) => Number(n).toLocaleString("en-US");

function svg(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawDays(report, days) {
  const first = report.start / 86_400;
  const quota = new Array(days).fill(0);
  for (const row of report.by_day) {
    const index = row.key / 86_400 - first;
    if (index >= 0 && index < days) quota[index] = row.quota;
  }
  const top = Math.max(...quota, 1);
  const width = WIDTH / days;
  const chart = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", class: "chart-svg", "aria-label": "Quota charged per UTC day" });
  quota.forEach((value, index) => {
    const height = ((HEIGHT - BOTTOM) * value) / top;
    const bar = svg("rect", { x: index * width + 1, y: HEIGHT - BOTTOM - height, width: Math.max(width - 2, 1), height, class: "series-0" });
    bar.append(svg("title", {}, `${utcMinute((first + index) * 86_400).slice(0, 10)}: ${dollars(value)}`));
    chart.append(bar);
  });
  chart.append(svg("text", { x: 0, y: HEIGHT - 4, class: "axis" }, utcMinute(report.start).slice(0, 10)));
  chart.append(svg("text", { x: WIDTH, y: HEIGHT - 4, class: "axis", "text-anchor": "end" }, `max ${dollars(top)} a day`));
  document.getElementById("day-chart").replaceChildren(chart);
}

function breakdown(row, name) {
  return [name, cell(count(row.requests), "num"), cell(count(row.tokens), "num"), cell(dollars(row.quota), "num"), cell(count(row.errors), "num")];
}

async function show(days) {
  for (const choice of document.querySelectorAll("[data-days]")) {
    choice.setAttribute("aria-pressed", String(choice.dataset.days === String(days)));
  }
  const answer = await getJSON(`/api/admin/dashboard?days=${days}`);
  if (!report(answer)) return;
  const data = answer.data;
  document.getElementById("total-requests").textContent = count(data.totals.requests);
  document.getElementById("total-tokens").textContent = count(data.totals.tokens);
  document.getElementById("total-quota").textContent = dollars(data.totals.quota);
  document.getElementById("total-errors").textContent = count(data.totals.errors);
  const classes = Object.entries(data.errors_by_class).map(([name, n]) => `${name}: ${count(n)}`);
  document.getElementById("errors-by-class").textContent = classes.join(" · ");
  fillRows(document.getElementById("by-model"), data.by_model, (row) => breakdown(row, row.key));
  fillRows(document.getElementById("by-channel"), data.by_channel, (row) => breakdown(row, row.key || "(none: admin charges)"));
  drawDays(data, days);
}

for (const choice of document.querySelectorAll("[data-days]")) {
  choice.addEventListener("click", () => show(Number(choice.dataset.days)));
}
show(7);
