// Keys of every user: search by key name, user or hint; disable or enable.

import { dollars, getJSON, utcMinute } from "../api.js";
import { button, cell, el, fillRows, formValues, query, report, send } from "./common.js";

let keyword = "";

async function setStatus(key, status) {
  const answer = await send("PUT", "/api/admin/keys/", { id: key.id, status });
  if (report(answer, `Key ${key.name} of ${key.username} ${status === 1 ? "enabled" : "disabled"}`)) load();
}

async function load() {
  const answer = await getJSON(`/api/admin/keys/?${query({ keyword, page_size: 100 })}`);
  if (!report(answer)) return;
  fillRows(document.getElementById("key-rows"), answer.data.items, (key) => [
    cell(key.id, "num"), key.username, el("th", { scope: "row" }, key.name), cell(key.hint, "mono"), key.state,
    cell(dollars(key.used_quota), "num"), cell(key.unlimited_quota ? "unlimited" : dollars(key.remain_quota), "num"),
    key.accessed_time && key.accessed_time !== key.created_time ? utcMinute(key.accessed_time) : "never",
    el("td", { class: "row-actions" }, key.status === 2
      ? button("Enable", () => setStatus(key, 1), "secondary", { "aria-label": `Enable ${key.name} of ${key.username}` })
      : button("Disable", () => setStatus(key, 2), "danger-ghost", { "aria-label": `Disable ${key.name} of ${key.username}` })),
  ]);
  document.getElementById("key-count").textContent = `${answer.data.total} keys`;
}

document.getElementById("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  keyword = formValues(event.target).keyword || "";
  load();
});
load();
