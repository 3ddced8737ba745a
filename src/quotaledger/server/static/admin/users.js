// Users: search, create (a random password shown once), grant or deduct with a reason,
// disable or enable, promote or demote, reset the password (shown once; sessions end).

import { dollars, getJSON, quotaOfDollars, wireCopyButtons } from "../api.js";
import { button, cell, el, fillRows, formValues, query, report, send } from "./common.js";

const ROLE = { 1: "user", 10: "admin", 100: "root" };
let keyword = "";

function showSecret(username, password) {
  document.getElementById("secret-user").textContent = username;
  document.getElementById("secret-value").textContent = password;
  const card = document.getElementById("secret-card");
  card.hidden = false;
  card.querySelector("[data-copy-target]").focus();
}

async function manage(user, action) {
  if (action === "delete" && !window.confirm(`Delete user ${user.username}?`)) return;
  const answer = await send("POST", "/api/user/manage", { id: user.id, action });
  if (report(answer, `${user.username}: ${action} done`)) load();
}

async function resetPassword(user) {
  if (!window.confirm(`Reset the password of ${user.username}? Every session of theirs ends.`)) return;
  const answer = await send("POST", "/api/user/reset_password", { id: user.id });
  if (report(answer, `New password for ${user.username}`)) showSecret(user.username, answer.data.password);
}

function adjust(user) {
  const form = document.getElementById("grant-form");
  form.elements.id.value = user.id;
  form.elements.usd.focus();
}

function actions(user) {
  const enabled = user.status === 1;
  const admin = user.role >= 10;
  const named = (label) => ({ "aria-label": `${label} ${user.username}` });
  return el("td", { class: "row-actions" },
    button("Grant / deduct", () => adjust(user), "secondary", named("Grant or deduct for")), " ",
    button(enabled ? "Disable" : "Enable", () => manage(user, enabled ? "disable" : "enable"), "secondary", named(enabled ? "Disable" : "Enable")), " ",
    button(admin ? "Demote" : "Promote", () => manage(user, admin ? "demote" : "promote"), "secondary", named(admin ? "Demote" : "Promote")), " ",
    button("Reset password", () => resetPassword(user), "danger-ghost", named("Reset the password of")));
}

async function load() {
  const path = keyword ? `/api/user/search?${query({ keyword, page_size: 100 })}` : "/api/user/?page_size=100";
  const answer = await getJSON(path);
  if (!report(answer)) return;
  fillRows(document.getElementById("user-rows"), answer.data.items, (user) => [
    cell(user.id, "num"), el("th", { scope: "row" }, user.username), ROLE[user.role] ?? user.role,
    user.status === 1 ? "enabled" : "disabled", user.group, cell(dollars(user.quota), "num"),
    cell(dollars(user.used_quota), "num"), cell(user.request_count, "num"), actions(user),
  ]);
  document.getElementById("user-count").textContent = `${answer.data.total} users`;
}

document.getElementById("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  keyword = formValues(event.target).keyword || "";
  load();
});
document.getElementById("create-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const answer = await send("POST", "/api/user/", formValues(event.target));
  if (report(answer, `User ${answer.data?.username ?? ""} created`)) {
    showSecret(answer.data.username, answer.data.password);
    event.target.reset();
    load();
  }
});
document.getElementById("grant-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const values = formValues(event.target);
  const negative = (values.usd || "").startsWith("-");
  const quota = quotaOfDollars((values.usd || "").replace(/^-/, ""));
  if (!quota) { report({ ok: false, message: "Give an amount in USD, such as 10 or -2.50." }); return; }
  const body = { id: Number(values.id), quota: negative ? -quota : quota, reason: values.reason || "" };
  const answer = await send("POST", "/api/user/grant", body);
  if (report(answer, `Balance of user ${body.id} is now ${answer.data ? dollars(answer.data.quota) : ""}`)) { event.target.reset(); load(); }
});
wireCopyButtons();
load();
