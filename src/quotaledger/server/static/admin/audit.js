// Audit: every admin action, newest first: when, who, from where, what and on what.

import { getJSON, utcMinute } from "../api.js";
import { cell, fillRows, formValues, query, report } from "./common.js";

async function load(values = {}) {
  const answer = await getJSON(`/api/audit/?${query({ ...values, page_size: 100 })}`);
  if (!report(answer)) return;
  fillRows(document.getElementById("audit-rows"), answer.data.items, (entry) => [
    cell(utcMinute(entry.created_at), "nowrap"), entry.actor, cell(entry.address, "mono"), cell(entry.action, "mono"),
    entry.target, cell(Object.keys(entry.detail).length ? JSON.stringify(entry.detail) : "", "mono detail"),
  ]);
  document.getElementById("audit-count").textContent = `${answer.data.total} actions`;
}

document.getElementById("audit-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  load(formValues(event.target));
});
load();
