// The redemption-code field (POST /api/user/topup {key}): the quota it added, then the
// balance read again (GET /api/user/self); a refusal is shown beside the field.

import { dollars, getJSON, postJSON, showError } from "./api.js";

const form = document.getElementById("redeem-form");
const code = document.getElementById("redeem-code");
const error = document.getElementById("redeem-error");
const status = document.getElementById("redeem-status");
const submit = form.querySelector("button[type=submit]");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(status, "");
  if (!code.value.trim()) {
    showError(error, "Enter a redemption code.");
    code.focus();
    return;
  }
  submit.disabled = true;
  const answer = await postJSON("/api/user/topup", { key: code.value.trim() });
  submit.disabled = false;
  if (!answer.ok) {
    showError(error, answer.message);
    code.focus();
    return;
  }
  showError(error, "");
  code.value = "";
  showError(status, `Added ${dollars(answer.data)} (${answer.data.toLocaleString("en-US")} quota) to your balance.`);
  await refreshBalance();
});

async function refreshBalance() {
  const answer = await getJSON("/api/user/self");
  if (!answer.ok) return;  // the page still says what was added
  const account = answer.data;
  const shown = {
    "balance-usd": dollars(account.quota),
    "balance-quota": account.quota.toLocaleString("en-US"),
    "used-usd": dollars(account.used_quota),
    "used-quota": account.used_quota.toLocaleString("en-US"),
    "request-count": account.request_count.toLocaleString("en-US"),
  };
  for (const [id, text] of Object.entries(shown)) document.getElementById(id).textContent = text;
}
