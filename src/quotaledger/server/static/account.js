import { postJSON, showError, wireCopyButtons } from "./api.js";

const dialog = document.getElementById("token-dialog");
const form = document.getElementById("token-form");
const password = document.getElementById("token-password");
const error = document.getElementById("token-error");
const submit = form.querySelector("button[type=submit]");
const result = document.getElementById("token-result");
const tokenValue = document.getElementById("token-value");
const tokenStatus = document.getElementById("token-status");
const pageError = document.getElementById("page-error");

wireCopyButtons();

document.getElementById("open-token-dialog").addEventListener("click", () => {
  forgetToken();  // a fresh form every time
  dialog.showModal();
  password.focus();
});

for (const button of dialog.querySelectorAll("[data-close-dialog]")) {
  button.addEventListener("click", () => {
    forgetToken();
    dialog.close();
  });
}

// However the dialog closes (Done, Cancel, Escape), the token leaves the page with it.
// The "close" event arrives as a later task: if the dialog was reopened meanwhile, it must
// not wipe what is being typed into the new one (reopening cleared the old state already).
dialog.addEventListener("close", () => {
  if (!dialog.open) forgetToken();
});

function forgetToken() {
  tokenValue.textContent = "";
  result.hidden = true;
  form.hidden = false;
  form.reset();
  showError(error, "");
  for (const status of dialog.querySelectorAll("[data-copy-status]")) status.textContent = "";
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!password.value) {
    showError(error, "Enter your account password.");
    password.focus();
    return;
  }
  submit.disabled = true;
  form.setAttribute("aria-busy", "true");
  const answer = await postJSON("/api/user/token", { password: password.value });
  password.value = "";
  form.removeAttribute("aria-busy");
  if (answer.ok) {
    submit.disabled = false;
    showToken(answer.data.token);
  } else {
    refuse(answer);
  }
});

function showToken(token) {
  showError(error, "");
  tokenValue.textContent = token;
  form.hidden = true;
  result.hidden = false;
  result.querySelector("[data-copy-target]").focus();
  tokenStatus.textContent = `Current token: ql_…${token.slice(-4)}, created just now.`;
}

function refuse(answer) {
  showError(error, answer.message);
  password.focus();
  if (answer.status === 429 && answer.retryAfter > 0) {
    // Trying again before the wait is over would only be refused again.
    setTimeout(() => { submit.disabled = false; }, answer.retryAfter * 1000);
  } else {
    submit.disabled = false;
  }
  if (answer.status === 401 && /session/i.test(answer.message)) {
    const link = document.createElement("a");
    link.href = "/login";
    link.textContent = "Log in again";
    error.append(" ", link);
  }
}

const logout = document.getElementById("logout");
logout.addEventListener("click", async () => {
  logout.disabled = true;
  const answer = await postJSON("/api/user/logout");
  if (answer.ok || answer.status === 401) {
    window.location.replace("/login?notice=logged-out");
    return;
  }
  logout.disabled = false;
  showError(pageError, answer.message);
});
