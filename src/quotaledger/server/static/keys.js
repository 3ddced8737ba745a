// The API keys section: the list (GET /api/token/), the create dialog (POST /api/token/,
// whose answer holds the key, once), enable/disable (PUT ?status_only=true) and delete
// (DELETE /api/token/{id}) after a confirmation. The key leaves the page with its dialog.

import {
  dollars, getJSON, quotaOfDollars, sendJSON, showError, utcDayStart, utcMinute,
} from "./api.js";

const PAGE_SIZE = 100;
const STATES = { enabled: "Active", disabled: "Disabled", expired: "Expired", exhausted: "Used up" };
const PERIOD_WORDS = { day: "today", month: "this month" };

const section = {
  error: document.getElementById("keys-error"),
  status: document.getElementById("keys-status"),
  empty: document.getElementById("keys-empty"),
  wrap: document.getElementById("keys-wrap"),
  body: document.querySelector("#keys-table tbody"),
  more: document.getElementById("keys-more"),
  opener: document.getElementById("open-key-dialog"),
};
const dialog = document.getElementById("key-dialog");
const form = document.getElementById("key-form");
const field = (name) => form.elements.namedItem(name);
const formError = document.getElementById("key-error");
const result = document.getElementById("key-result");
const keyValue = document.getElementById("key-value");
const confirmDialog = document.getElementById("delete-key-dialog");
const confirmButton = document.getElementById("confirm-delete-key");
let deleting = null;  // the key the confirmation dialog is about

// The copy button is wired by account.js, with every other copy button on the page.

// ------------------------------------------------------------------ the list

export async function loadKeys() {
  const answer = await getJSON(`/api/token/?p=1&page_size=${PAGE_SIZE}`);
  if (!answer.ok) {
    showError(section.error, answer.message);
    return [];
  }
  showError(section.error, "");
  const { items, total } = answer.data;
  section.body.replaceChildren(...items.map(keyRow));
  section.empty.hidden = items.length > 0;
  section.wrap.hidden = items.length === 0;
  section.more.hidden = total <= items.length;
  section.more.textContent = `Showing the newest ${items.length} of ${total} keys.`;
  document.dispatchEvent(new CustomEvent("ql:keys", { detail: items.map((key) => key.name) }));
  return items;
}

function keyRow(key) {
  const row = document.createElement("tr");
  row.dataset.keyId = key.id;
  const name = cell(key.name, "th");
  name.scope = "row";
  row.append(
    name,
    cell(key.key.replace(/\*+/, "…"), "td", "mono"),
    cell(dollars(key.used_quota), "td", "num"),
    cell(key.unlimited_quota ? "Unlimited" : dollars(key.remain_quota), "td", "num"),
    cell(periodText(key)),
    statusCell(key),
    cell(lastUse(key)),
    actionsCell(key),
  );
  return row;
}

function cell(text, tag = "td", kind = "") {
  const element = document.createElement(tag);
  element.textContent = text;
  if (kind) element.className = kind;
  return element;
}

function periodText(key) {
  if (!key.period) return "None";
  return `${dollars(key.period_used)} of ${dollars(key.period_quota)} ${PERIOD_WORDS[key.period]}`;
}

function statusCell(key) {
  const element = cell("");
  const badge = cell(STATES[key.state] || key.state, "span", `badge badge-${key.state}`);
  element.append(badge);
  if (key.expired_time > 0 && key.state !== "expired") element.append(cell(expiry(key.expired_time), "span", "sub"));
  return element;
}

// A key made here expires at a midnight (UTC): it works through the day before.
function expiry(seconds) {
  if (seconds % 86_400 === 0) return `through ${utcMinute(seconds - 86_400).slice(0, 10)}`;
  return `until ${utcMinute(seconds)}`;
}

function lastUse(key) {
  return key.request_count > 0 ? utcMinute(key.accessed_time) : "Never";
}

function actionsCell(key) {
  const element = cell("", "td", "row-actions");
  const enabled = key.status === 1;
  const toggle = button(enabled ? "Disable" : "Enable", `${enabled ? "Disable" : "Enable"} key ${key.name}`);
  toggle.dataset.action = "toggle";
  toggle.addEventListener("click", () => setEnabled(key, !enabled));
  const remove = button("Delete", `Delete key ${key.name}`, "danger-ghost");
  remove.addEventListener("click", () => askToDelete(key, remove));
  element.append(toggle, remove);
  return element;
}

function button(text, label, kind = "secondary") {
  const element = document.createElement("button");
  element.type = "button";
  element.className = `button small ${kind}`;
  element.textContent = text;
  element.setAttribute("aria-label", label);
  return element;
}

async function setEnabled(key, enabled) {
  const body = { id: key.id, status: enabled ? 1 : 2 };
  const answer = await sendJSON("PUT", "/api/token/?status_only=true", body);
  if (!answer.ok) {
    showError(section.error, answer.message);
    return;
  }
  section.status.textContent = `Key ${key.name} ${enabled ? "enabled" : "disabled"}.`;
  await loadKeys();
  // The row was drawn anew: keep the keyboard where it was.
  section.body.querySelector(`tr[data-key-id="${key.id}"] [data-action=toggle]`)?.focus();
}

// ------------------------------------------------------------------ delete

function askToDelete(key, opener) {
  deleting = key;
  document.getElementById("delete-key-name").textContent = key.name;
  showError(document.getElementById("delete-key-error"), "");
  confirmButton.disabled = false;
  confirmDialog.showModal();
  confirmDialog.querySelector("[data-close-dialog]").focus();  // the safe choice first
  opener.blur();
}

confirmButton.addEventListener("click", async () => {
  const key = deleting;
  confirmButton.disabled = true;
  const answer = await sendJSON("DELETE", `/api/token/${key.id}`);
  confirmButton.disabled = false;
  if (!answer.ok) {
    showError(document.getElementById("delete-key-error"), answer.message);
    return;
  }
  confirmDialog.close();
  section.status.textContent = `Key ${key.name} deleted.`;
  await loadKeys();
  section.opener.focus();  // its row, and the button that opened the dialog, are gone
});

for (const close of confirmDialog.querySelectorAll("[data-close-dialog]")) {
  close.addEventListener("click", () => confirmDialog.close());
}

// ------------------------------------------------------------------ create

section.opener.addEventListener("click", () => {
  forgetKey();
  dialog.showModal();
  field("name").focus();
});

for (const close of dialog.querySelectorAll("[data-close-dialog]")) {
  close.addEventListener("click", () => {
    forgetKey();
    dialog.close();
  });
}

// Escape too: the key leaves the page with the dialog (see account.js for the reopen race).
dialog.addEventListener("close", () => {
  if (!dialog.open) forgetKey();
});

function forgetKey() {
  keyValue.textContent = "";
  result.hidden = true;
  form.hidden = false;
  form.reset();
  syncInputs();
  showError(formError, "");
  for (const status of dialog.querySelectorAll("[data-copy-status]")) status.textContent = "";
}

// A budget only when not unlimited; a period limit only with a period.
function syncInputs() {
  field("budget").disabled = field("unlimited").checked;
  field("period_limit").disabled = !field("period").value;
}
field("unlimited").addEventListener("change", () => {
  syncInputs();
  if (!field("budget").disabled) field("budget").focus();
});
field("period").addEventListener("change", syncInputs);

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const [body, problem] = keyBody();
  if (problem) {
    showError(formError, problem.message);
    field(problem.field).focus();
    return;
  }
  const submit = form.querySelector("button[type=submit]");
  submit.disabled = true;
  form.setAttribute("aria-busy", "true");
  const answer = await sendJSON("POST", "/api/token/", body);
  submit.disabled = false;
  form.removeAttribute("aria-busy");
  if (!answer.ok) {
    showError(formError, answer.message);
    field("name").focus();
    return;
  }
  showKey(answer.data.key);
  loadKeys();
});

// SPEC §12's rate limits: our own fields (`rate_limit_rpm`...), not new-api's.
const RATE_FIELDS = [["rpm", "Requests per minute"], ["tpm", "Tokens per minute"],
  ["concurrency", "Concurrent requests"]];

// The form as new-api's token fields, or the first problem found.
function keyBody() {
  const name = field("name").value.trim();
  if (!name) return [null, { field: "name", message: "Give the key a name." }];
  const body = { name, unlimited_quota: field("unlimited").checked, remain_quota: 0 };
  if (!body.unlimited_quota) {
    body.remain_quota = quotaOfDollars(field("budget").value);
    if (body.remain_quota === null) {
      return [null, { field: "budget", message: "Enter the budget in USD, such as 5 or 12.50." }];
    }
  }
  const period = field("period").value;
  if (period) {
    const limit = quotaOfDollars(field("period_limit").value);
    if (!limit) {
      return [null, { field: "period_limit", message: "Enter the limit per period in USD, more than 0." }];
    }
    Object.assign(body, { period, period_quota: limit });
  }
  for (const [name, label] of RATE_FIELDS) {
    const text = field(name).value.trim();
    if (!text) continue;
    if (!/^[1-9][0-9]{0,15}$/.test(text)) {
      return [null, { field: name, message: `${label}: a whole number from 1, or empty for no limit.` }];
    }
    body[`rate_limit_${name}`] = Number(text);
  }
  const day = utcDayStart(field("expires").value);
  body.expired_time = day === null ? -1 : day + 86_400;  // through the end of that day
  if (day !== null && body.expired_time <= Date.now() / 1000) {
    return [null, { field: "expires", message: "The expiry must be today or later." }];
  }
  const models = field("models").value.split(/[\s,]+/).filter(Boolean);
  Object.assign(body, { model_limits_enabled: models.length > 0, model_limits: models.join(",") });
  body.allow_ips = field("networks").value.split(/[\s,]+/).filter(Boolean).join("\n");
  return [body, null];
}

function showKey(key) {
  showError(formError, "");
  keyValue.textContent = key;
  form.hidden = true;
  result.hidden = false;
  result.querySelector("[data-copy-target]").focus();
}

loadKeys();
