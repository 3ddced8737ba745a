import { postJSON, showError } from "./api.js";

const form = document.getElementById("login-form");
const error = document.getElementById("login-error");
const submit = form.querySelector("button[type=submit]");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const username = form.username.value.trim();
  const password = form.password.value;
  if (!username || !password) {
    showError(error, "Enter your username and password.");
    (username ? form.password : form.username).focus();
    return;
  }
  showError(error, "");
  submit.disabled = true;
  form.setAttribute("aria-busy", "true");
  const result = await postJSON("/api/user/login", { username, password });
  if (result.ok) {
    window.location.replace("/account");
    return;
  }
  form.removeAttribute("aria-busy");
  showError(error, result.message);
  form.password.value = "";
  form.password.focus();
  if (result.status === 429 && result.retryAfter > 0) {
    // Too many wrong passwords: trying again before the wait is over is refused again.
    setTimeout(() => { submit.disabled = false; }, result.retryAfter * 1000);
  } else {
    submit.disabled = false;
  }
});
