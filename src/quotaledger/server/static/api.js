// Talking to the quotaledger JSON API from the pages: every answer is the envelope
// {success, message, data}; state-changing session calls carry the CSRF header.

export function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...value] = part.trim().split("=");
    if (name === "ql_csrf") return decodeURIComponent(value.join("="));
  }
  return "";
}

// "wrong password" -> "Wrong password."
export function sentence(text) {
  if (!text) return "";
  const first = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

// POST `body` as JSON; resolves to {ok, status, message, data, retryAfter}, never throws.
export async function postJSON(path, body) {
  const headers = { Accept: "application/json", "Content-Type": "application/json" };
  const csrf = csrfToken();
  if (csrf) headers["X-CSRF-Token"] = csrf;
  let response;
  try {
    response = await fetch(path, {
      method: "POST",
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    return failure(0, "The server could not be reached. Check your connection and try again.");
  }
  let envelope = null;
  try {
    envelope = await response.json();
  } catch {
    // not JSON: a proxy's error page, for instance
  }
  if (response.ok && envelope?.success === true) {
    return { ok: true, status: response.status, message: "", data: envelope.data, retryAfter: 0 };
  }
  const result = failure(response.status, envelope?.message || `The server answered ${response.status}.`);
  result.retryAfter = Number(response.headers.get("Retry-After")) || 0;
  return result;
}

function failure(status, message) {
  return { ok: false, status, message: sentence(message), data: null, retryAfter: 0 };
}

export function showError(element, message) {
  element.textContent = message;
  element.hidden = !message;
}

// Copy `text` to the clipboard; falls back to a selection where the Clipboard API is
// missing (plain http on another host than localhost is not a secure context).
export async function copyText(text, element) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const selection = window.getSelection();
    const range = document.createRange();
    range.selectNodeContents(element);
    selection.removeAllRanges();
    selection.addRange(range);
    return document.execCommand("copy");
  }
}

// Every button with data-copy-target="ID" copies the text of #ID and reports in the
// status element with data-copy-status="ID".
export function wireCopyButtons(root = document) {
  for (const button of root.querySelectorAll("[data-copy-target]")) {
    const id = button.dataset.copyTarget;
    const source = document.getElementById(id);
    const status = root.querySelector(`[data-copy-status="${id}"]`);
    button.addEventListener("click", async () => {
      const copied = await copyText(source.textContent.trim(), source);
      status.textContent = copied
        ? "Copied to the clipboard."
        : "Copying failed: select the text and copy it by hand.";
      if (copied) {
        button.textContent = "Copied";
        setTimeout(() => { button.textContent = "Copy"; }, 2000);
      }
    });
  }
}
