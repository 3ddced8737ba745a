// Account Settings: change the password (the current one required); every other session
// of the account ends, this one stays.

import { sendJSON, showError } from "./api.js";

const form = document.getElementById("password-form");
const error = document.getElementById("password-error");
const status = document.getElementById("password-status");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const submit = form.querySelector("button[type=submit]");
  const body = { original_password: form.elements.original_password.value, password: form.elements.password.value };
  status.hidden = true;
  if (body.password.length < 8) { showError(error, "The new password needs at least 8 characters."); return; }
  submit.disabled = true;
  const answer = await sendJSON("PUT", "/api/user/self", body);
  submit.disabled = false;
  if (!answer.ok) { showError(error, answer.message); return; }
  showError(error, "");
  form.reset();
  const ended = answer.data.sessions_ended;
  status.textContent = `Password changed. ${ended === 1 ? "1 other session" : `${ended} other sessions`} ended.`;
  status.hidden = false;
});
