// The Alerts section: the account's thresholds (PUT /api/user/alerts), its Apprise URLs,
// shown only as hints (POST /api/user/alerts/urls, DELETE .../urls/{index}), a test
// notification (POST /api/user/alerts/test) and the thresholds of each key with a budget
// (PUT /api/user/alerts/keys/{id}). Amounts are typed in USD and sent as text: the server
// reads them as decimals.

import { dollars, getJSON, quotaOfDollars, sendJSON, showError } from "./api.js";

const error = document.getElementById("alerts-error");
const status = document.getElementById("alerts-status");
const thresholds = document.getElementById("alert-thresholds");
const warn = document.getElementById("alert-warn");
const critical = document.getElementById("alert-critical");
const urlForm = document.getElementById("alert-url-form");
const urlInput = document.getElementById("alert-url");
const urlList = document.getElementById("alert-urls");
const urlsEmpty = document.getElementById("alert-urls-empty");
const testButton = document.getElementById("alert-test");
const keysWrap = document.getElementById("alert-keys-wrap");
const keysEmpty = document.getElementById("alert-keys-empty");
const keysBody = document.querySelector("#alert-keys-table tbody");

function say(message) {
  showError(error, "");
  showError(status, message);
}

function fail(message, focus) {
  showError(status, "");
  showError(error, message);
  focus?.focus();
}

// "" -> null; "12.5" -> "12.5"; anything else -> undefined (refused before sending).
function amount(input) {
  const text = input.value.trim().replace(/^\$/, "");
  if (!text) return null;
  return quotaOfDollars(text) === null ? undefined : text;
}

function plain(usd) {
  return usd === null ? "" : usd;
}

// Draws the settings: the account's thresholds only when asked (the first load, their
// save), and the keys' unless one is being typed into, unless `saved` (an answer to a
// change): a list refreshed meanwhile never overwrites what is being typed.
function show(data, { levels = false, saved = false } = {}) {
  if (levels) {
    warn.value = plain(data.warn_usd);
    critical.value = plain(data.critical_usd);
  }
  document.getElementById("alert-margin").textContent = data.recovery_margin;
  urlList.replaceChildren(...data.urls.map(urlItem));
  urlList.hidden = data.urls.length === 0;
  urlsEmpty.hidden = data.urls.length > 0;
  if (saved || !keysBody.contains(document.activeElement) || !sameKeys(data.keys)) {
    keysBody.replaceChildren(...data.keys.map(keyRow));
  }  // else a key's thresholds are being typed: the same keys, drawn already
  keysWrap.hidden = data.keys.length === 0;
  keysEmpty.hidden = data.keys.length > 0;
}

function sameKeys(keys) {
  const shown = [...keysBody.rows].map((row) => row.dataset.keyId);
  return shown.join() === keys.map((key) => String(key.id)).join();
}

async function load(levels = false) {
  const answer = await getJSON("/api/user/alerts");
  if (answer.ok) show(answer.data, { levels });
  else fail(answer.message);
}

// Sends a change; on success shows the settings it answers with and says `done`.
async function change(method, path, body, done, focus) {
  const answer = await sendJSON(method, path, body);
  if (!answer.ok) {
    fail(answer.message, focus);
    return false;
  }
  show(answer.data, { levels: path === "/api/user/alerts", saved: true });
  say(done);
  return true;
}

// ------------------------------------------------------------------ thresholds

thresholds.addEventListener("submit", async (event) => {
  event.preventDefault();
  const levels = { warn_usd: amount(warn), critical_usd: amount(critical) };
  if (levels.warn_usd === undefined) return fail("Enter the warning amount in USD, e.g. 20.", warn);
  if (levels.critical_usd === undefined) return fail("Enter the critical amount in USD, e.g. 5.", critical);
  await change("PUT", "/api/user/alerts", levels, "Thresholds saved.", warn);
});

// ------------------------------------------------------------------ URLs

function urlItem(url) {
  const item = document.createElement("li");
  const hint = document.createElement("code");
  hint.textContent = url.hint;
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "button ghost small";
  remove.textContent = "Remove";
  remove.setAttribute("aria-label", `Remove ${url.hint}`);
  remove.addEventListener("click", async () => {
    const removed = await change("DELETE", `/api/user/alerts/urls/${url.index}`, undefined,
      `Removed ${url.hint}.`);
    if (removed) urlInput.focus();  // the button is gone: keep the keyboard in the section
  });
  item.append(hint, remove);
  return item;
}

urlForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const url = urlInput.value.trim();
  if (!url) return fail("Enter an Apprise URL, e.g. mailto://user:password@example.com.", urlInput);
  const added = await change("POST", "/api/user/alerts/urls", { url }, "URL added.", urlInput);
  if (added) urlInput.value = "";  // the URL leaves the page: only its hint stays
});

testButton.addEventListener("click", async () => {
  testButton.disabled = true;
  const answer = await sendJSON("POST", "/api/user/alerts/test");
  testButton.disabled = false;
  if (!answer.ok) return fail(answer.message, testButton);
  const count = answer.data.sent_to;
  say(`Test notification sent to ${count} address${count === 1 ? "" : "es"}.`);
});

// ------------------------------------------------------------------ keys

function keyRow(key) {
  const row = document.createElement("tr");
  row.dataset.keyId = key.id;
  const name = document.createElement("th");
  name.scope = "row";
  name.textContent = key.name;
  const left = document.createElement("td");
  left.className = "num";
  left.textContent = dollars(key.remain_quota);
  const inputs = ["warn", "critical"].map((level) => levelInput(key, level));
  const save = document.createElement("button");
  save.type = "button";
  save.className = "button secondary small";
  save.textContent = "Save";
  save.setAttribute("aria-label", `Save the thresholds of key ${key.name}`);
  save.addEventListener("click", () => saveKey(key, inputs));
  const actions = document.createElement("td");
  actions.className = "row-actions";
  actions.append(save);
  row.append(name, left, ...inputs.map(inCell), actions);
  return row;
}

function levelInput(key, level) {
  const input = document.createElement("input");
  input.type = "text";
  input.inputMode = "decimal";
  input.autocomplete = "off";
  input.className = "threshold";
  input.value = plain(key[`${level}_usd`]);
  input.setAttribute("aria-label", `${level === "warn" ? "Warning" : "Critical"} threshold of key ${key.name}, USD`);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      input.closest("tr").querySelector("button").click();
    }
  });
  return input;
}

function inCell(input) {
  const cell = document.createElement("td");
  cell.append(input);
  return cell;
}

async function saveKey(key, [warnInput, criticalInput]) {
  const levels = { warn_usd: amount(warnInput), critical_usd: amount(criticalInput) };
  if (levels.warn_usd === undefined) return fail(`Enter the warning amount of ${key.name} in USD.`, warnInput);
  if (levels.critical_usd === undefined) return fail(`Enter the critical amount of ${key.name} in USD.`, criticalInput);
  const saved = await change("PUT", `/api/user/alerts/keys/${key.id}`, levels,
    `Thresholds of key ${key.name} saved.`, warnInput);
  // The table was drawn again: the keyboard goes back to the same key's Save button.
  if (saved) keysBody.querySelector(`tr[data-key-id="${key.id}"] button`)?.focus();
}

// A key created, limited or deleted in the API keys section changes the list here.
document.addEventListener("ql:keys", () => load());
load(true);
