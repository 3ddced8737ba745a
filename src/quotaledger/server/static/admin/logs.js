// Logs of every user: filters (user, key, model, channel, status, time), pages, totals,
// and the CSV of the same filters.

import { dollars, getJSON, utcDayStart, utcMinute } from "../api.js";
import { cell, el, fillRows, formValues, query, report } from "./common.js";

const SIZE = 50;
const form = document.getElementById("log-filters");
let page = 1;

function filters() {
  const values = formValues(form);
  const from = utcDayStart(values.from);
  const to = utcDayStart(values.to);
  delete values.from;
  delete values.to;
  if (from) values.start_timestamp = from;
  if (to) values.end_timestamp = to + 86_399;
  return values;
}

async function load() {
  const wanted = filters();
  document.getElementById("log-csv").href = `/api/log/export.csv?${query(wanted)}`;
  const [answer, stat] = await Promise.all([
    getJSON(`/api/log/?${query({ ...wanted, p: page, page_size: SIZE })}`),
    getJSON(`/api/log/stat?${query(wanted)}`),
  ]);
  if (!report(answer)) return;
  const { items, total } = answer.data;
  fillRows(document.getElementById("log-rows"), items, (row) => [
    cell(utcMinute(row.created_at), "nowrap"), row.username, row.token_name, row.model_name, row.channel_name,
    cell(row.status, row.status >= 200 && row.status < 300 ? "num" : "num failed"),
    cell(`${row.prompt_tokens} / ${row.completion_tokens}`, "num"), cell(dollars(row.quota), "num"),
    cell(row.request_id, "mono"),
  ]);
  const pages = Math.max(1, Math.ceil(total / SIZE));
  document.getElementById("log-page").textContent = `page ${page} of ${pages} · ${total} rows`;
  document.getElementById("log-previous").disabled = page <= 1;
  document.getElementById("log-next").disabled = page >= pages;
  if (stat.ok) document.getElementById("log-stat").textContent = `${dollars(stat.data.quota)} charged over these filters · ${stat.data.rpm} requests and ${stat.data.tpm} tokens in the last minute`;
}

form.addEventListener("submit", (event) => { event.preventDefault(); page = 1; load(); });
document.getElementById("log-previous").addEventListener("click", () => { page -= 1; load(); });
document.getElementById("log-next").addEventListener("click", () => { page += 1; load(); });
load();
