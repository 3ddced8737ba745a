// The Usage section: the 30-day chart (GET /api/data/self), the log with its filters and
// pages (GET /api/log/self, new-api's parameters) and the CSV export link over the same
// filters (GET /api/log/self/export.csv).

import { dollars, getJSON, showError, utcDayStart, utcMinute } from "./api.js";
import { dailyByModel, drawChart } from "./usage_chart.js";

const DAY = 86_400;
const DAYS = 30;
const PAGE_SIZE = 20;

const chart = document.getElementById("usage-chart");
const legend = document.getElementById("usage-legend");
const total = document.getElementById("usage-total");
const filters = document.getElementById("log-filters");
const log = {
  error: document.getElementById("log-error"),
  empty: document.getElementById("log-empty"),
  wrap: document.getElementById("log-wrap"),
  body: document.querySelector("#log-table tbody"),
  page: document.getElementById("log-page"),
  previous: document.getElementById("log-previous"),
  next: document.getElementById("log-next"),
  export: document.getElementById("log-export"),
};
let page = 1;
let query = new URLSearchParams();

// ------------------------------------------------------------------ chart

async function loadChart() {
  const now = Math.floor(Date.now() / 1000);
  const start = (Math.floor(now / DAY) - DAYS + 1) * DAY;  // midnight UTC, 29 days ago
  const answer = await getJSON(`/api/data/self?start_timestamp=${start}&end_timestamp=${now}`);
  chart.removeAttribute("aria-busy");
  if (!answer.ok) {
    chart.textContent = `The chart could not be drawn: ${answer.message}`;
    return;
  }
  const data = dailyByModel(answer.data, DAYS, now);
  drawChart(chart, legend, data);
  chart.scrollLeft = chart.scrollWidth;  // on a narrow screen the chart scrolls: show today
  const sum = data.totals.reduce((a, b) => a + b, 0);
  total.textContent = `${dollars(sum)} · ${requests(data.grid.reduce((a, d) => a + d.count, 0))}`;
  fillList("log-model-names", data.series.filter((name) => name !== "Other"));
}

// ------------------------------------------------------------------ log

function filterQuery() {
  const wanted = new URLSearchParams();
  const text = (name) => filters.elements.namedItem(name).value.trim();
  if (text("model_name")) wanted.set("model_name", text("model_name"));
  if (text("token_name")) wanted.set("token_name", text("token_name"));
  const from = utcDayStart(text("from"));
  const to = utcDayStart(text("to"));
  if (from !== null) wanted.set("start_timestamp", from);
  if (to !== null) wanted.set("end_timestamp", to + DAY - 1);  // through the end of that day
  return wanted;
}

let logAsked = 0; // the latest log request: an older answer arriving late is dropped

async function loadLog() {
  const asked = ++logAsked;
  const params = new URLSearchParams(query);
  params.set("p", page);
  params.set("page_size", PAGE_SIZE);
  log.body.closest("table").setAttribute("aria-busy", "true");
  const answer = await getJSON(`/api/log/self?${params}`);
  if (asked !== logAsked) return;
  log.body.closest("table").removeAttribute("aria-busy");
  if (!answer.ok) {
    showError(log.error, answer.message);
    return;
  }
  showError(log.error, "");
  const { items, total: count } = answer.data;
  log.body.replaceChildren(...items.map(logRow));
  log.empty.hidden = items.length > 0;
  log.wrap.hidden = items.length === 0;
  const pages = Math.max(Math.ceil(count / PAGE_SIZE), 1);
  log.page.textContent = `Page ${page} of ${pages} · ${requests(count)}`;
  log.previous.disabled = page <= 1;
  log.next.disabled = page >= pages;
  // A button that just turned off drops the keyboard's focus: hand it to the other one.
  if (document.activeElement === log.next && log.next.disabled) log.previous.focus();
  if (document.activeElement === log.previous && log.previous.disabled) log.next.focus();
}

function latency(ms) {
  if (ms === null || ms === undefined) return "—";
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function requests(count) {
  return `${count.toLocaleString("en-US")} ${count === 1 ? "request" : "requests"}`;
}

function logRow(item) {
  const row = document.createElement("tr");
  const cells = [
    [utcMinute(item.created_at), "nowrap"],
    [item.token_name || "—", ""],
    [item.model_name, "mono"],
    [item.prompt_tokens.toLocaleString("en-US"), "num"],
    [item.completion_tokens.toLocaleString("en-US"), "num"],
    [(item.cached_tokens ?? 0).toLocaleString("en-US"), "num"],
    [((item.cache_write_tokens ?? 0) + (item.cache_write_1h_tokens ?? 0)).toLocaleString("en-US"), "num"],
    [dollars(item.quota), "num"],
    [item.channel_name || "—", ""],
    [latency(item.latency_ms), "num nowrap"],
    [String(item.status), item.status >= 400 ? "num failed" : "num"],
  ];
  for (const [text, kind] of cells) {
    const cell = document.createElement("td");
    cell.textContent = text;
    if (kind) cell.className = kind;
    row.append(cell);
  }
  return row;
}

function fillList(id, names) {
  const list = document.getElementById(id);
  list.replaceChildren(...names.map((name) => Object.assign(document.createElement("option"), { value: name })));
}

filters.addEventListener("submit", (event) => {
  event.preventDefault();
  const from = utcDayStart(filters.elements.namedItem("from").value);
  const to = utcDayStart(filters.elements.namedItem("to").value);
  if (from !== null && to !== null && from > to) {
    showError(log.error, "The first day must not be after the last.");
    filters.elements.namedItem("from").focus();
    return;
  }
  query = filterQuery();
  log.export.href = `/api/log/self/export.csv${query.size ? `?${query}` : ""}`;
  page = 1;
  loadLog();
});

// "Clear" empties the fields (the browser does that), then shows the whole log again.
filters.addEventListener("reset", () => {
  setTimeout(() => filters.requestSubmit(), 0);
});

log.previous.addEventListener("click", () => { page -= 1; loadLog(); });
log.next.addEventListener("click", () => { page += 1; loadLog(); });
document.addEventListener("ql:keys", (event) => fillList("log-key-names", event.detail));

loadChart();
loadLog();
