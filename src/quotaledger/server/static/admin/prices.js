// Models & prices: every price field of a model, set and deleted; groups and their ratios.

import { getJSON } from "../api.js";
import { button, cell, el, fillRows, formValues, report, send } from "./common.js";

const FIELDS = ["per_call_usd", "input_usd_per_mtok", "output_usd_per_mtok", "cache_read_usd_per_mtok", "cache_write_usd_per_mtok", "cache_write_1h_usd_per_mtok"];
// Saved with the price but not listed: a PUT replaces the whole price, so an edit carries them.
const MORE = ["max_output_tokens", "long_context_threshold", "long_input_usd_per_mtok", "long_output_usd_per_mtok", "long_cache_read_usd_per_mtok", "long_cache_write_usd_per_mtok", "long_cache_write_1h_usd_per_mtok", "web_search_usd_per_kcall"];
const usd = (value) => (value === null || value === undefined ? "–" : `$${value}`);

async function remove(model) {
  if (!window.confirm(`Delete the price of ${model}? Requests for it are then refused.`)) return;
  const answer = await send("DELETE", `/api/admin/prices/?model=${encodeURIComponent(model)}`);
  if (report(answer, `Price of ${model} deleted`)) load();
}

function edit(row) {
  const form = document.getElementById("price-form");
  form.elements.model.value = row.model;
  for (const name of [...FIELDS, ...MORE]) form.elements[name].value = row[name] ?? "";
  form.querySelector("details").open = MORE.some((name) => row[name] !== null && row[name] !== undefined);
  form.elements.model.focus();
}

async function load() {
  const answer = await getJSON("/api/admin/prices/");
  if (!report(answer)) return;
  fillRows(document.getElementById("price-rows"), answer.data.models, (row) => [
    el("th", { scope: "row" }, row.model), ...FIELDS.map((name) => cell(usd(row[name]), "num")),
    el("td", { class: "row-actions" }, button("Edit", () => edit(row), "secondary", { "aria-label": `Edit ${row.model}` }), " ",
      button("Delete", () => remove(row.model), "danger-ghost", { "aria-label": `Delete ${row.model}` })),
  ]);
  const groups = Object.entries(answer.data.group_ratios);
  fillRows(document.getElementById("group-rows"), groups, ([name, ratio]) => [el("th", { scope: "row" }, name), cell(ratio, "num")]);
}

document.getElementById("price-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const answer = await send("PUT", "/api/admin/prices/", formValues(event.target));
  if (report(answer, `Price of ${answer.data?.model ?? ""} saved`)) { event.target.reset(); load(); }
});
document.getElementById("group-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const answer = await send("PUT", "/api/admin/groups/", formValues(event.target));
  if (report(answer, `Group ${answer.data?.name ?? ""} saved`)) { event.target.reset(); load(); }
});
load();
