// Channels: the list (format, models, priority and weight, status, key hint), add and edit
// with the key write-only, test, enable or disable, delete after a confirmation.

import { getJSON } from "../api.js";
import { button, cell, el, fillRows, formValues, report, send } from "./common.js";

const form = document.getElementById("channel-form");
const submit = document.getElementById("channel-submit");
const cancel = document.getElementById("channel-cancel");
const title = document.getElementById("channel-form-title");
const keyHelp = document.getElementById("channel-key-help");
let channels = [];

function body() {
  const values = formValues(form);
  for (const name of ["priority", "weight", "id"]) if (name in values) values[name] = Number(values[name]);
  if (!("model_mapping" in values)) values.model_mapping = "";
  return values;
}

function startEdit(channel) {
  form.reset();
  for (const [name, value] of Object.entries({ id: channel.id, name: channel.name, format: channel.format, base_url: channel.base_url, models: channel.models, model_mapping: channel.model_mapping, priority: channel.priority, weight: channel.weight })) {
    form.elements[name].value = value;
  }
  title.textContent = `Edit channel ${channel.name}`;
  submit.textContent = "Save changes";
  keyHelp.textContent = `Stored key ${channel.api_key_hint}: leave empty to keep it.`;
  cancel.hidden = false;
  form.elements.name.focus();
}

function stopEdit() {
  form.reset();
  form.elements.id.value = "";
  title.textContent = "Add a channel";
  submit.textContent = "Add channel";
  keyHelp.textContent = "Write-only: stored encrypted, never shown again.";
  cancel.hidden = true;
}

async function test(channel) {
  const answer = await getJSON(`/api/channel/test/${channel.id}`);
  // The test answers new-api's {success, message, time}: sendJSON reads success/message.
  const done = answer.ok && `Channel ${channel.name} works: HTTP ${answer.data.status} in ${Math.round(answer.data.seconds * 1000)} ms (${answer.data.upstream_model})`;
  report(answer, done);
}

async function setStatus(channel, status) {
  const answer = await send("PUT", "/api/channel/", { id: channel.id, status });
  if (report(answer, `Channel ${channel.name} ${status === 1 ? "enabled" : "disabled"}`)) load();
}

async function remove(channel) {
  if (!window.confirm(`Delete channel ${channel.name}? Requests stop going to it at once.`)) return;
  const answer = await send("DELETE", `/api/channel/${channel.id}`);
  if (report(answer, `Channel ${channel.name} deleted`)) load();
}

function row(channel) {
  const enabled = channel.status === 1;
  return [
    el("th", { scope: "row" }, channel.name), channel.format, cell(channel.base_url, "mono"),
    channel.models.split(",").join(", "), cell(`${channel.priority} / ${channel.weight}`, "num"),
    el("td", {}, el("span", { class: `badge badge-${enabled ? "enabled" : "disabled"}` }, enabled ? "enabled" : "disabled")),
    cell(channel.api_key_hint, "mono"),
    el("td", { class: "row-actions" },
      button("Test", () => test(channel), "secondary", { "aria-label": `Test ${channel.name}` }), " ",
      button("Edit", () => startEdit(channel), "secondary", { "aria-label": `Edit ${channel.name}` }), " ",
      button(enabled ? "Disable" : "Enable", () => setStatus(channel, enabled ? 2 : 1), "secondary", { "aria-label": `${enabled ? "Disable" : "Enable"} ${channel.name}` }), " ",
      button("Delete", () => remove(channel), "danger-ghost", { "aria-label": `Delete ${channel.name}` })),
  ];
}

async function load() {
  const answer = await getJSON("/api/channel/?page_size=100");
  if (!answer.ok) { report(answer); return; }
  channels = answer.data.items;
  const rows = document.getElementById("channel-rows");
  rows.replaceChildren(...channels.map((c) => el("tr", {}, ...row(c).map((x) => (x instanceof Node && ["TD", "TH"].includes(x.tagName)) ? x : el("td", {}, x)))));
  document.getElementById("channel-empty").hidden = channels.length > 0;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const values = body();
  const editing = Boolean(values.id);
  submit.disabled = true;
  const answer = await send(editing ? "PUT" : "POST", "/api/channel/", values);
  submit.disabled = false;
  if (report(answer, `Channel ${answer.data?.name ?? ""} ${editing ? "saved" : "added"}`)) { stopEdit(); load(); }
});
cancel.addEventListener("click", stopEdit);
load();
