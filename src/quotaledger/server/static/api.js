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
export function postJSON(path, body) {
  return sendJSON("POST", path, body);
}

// GET `path`; the same answer as postJSON.
export function getJSON(path) {
  return sendJSON("GET", path);
}

// Any method; state changes (all but GET) carry the CSRF header.
export async function sendJSON(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const csrf = csrfToken();
  if (csrf && method !== "GET") headers["X-CSRF-Token"] = csrf;
  let response;
  try {
    response = await fetch(path, {
      method,
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

// Quota as dollars for people, truncated to cents as the server shows them ("$49.99",
// "$1,234.50"); amounts under a cent keep their digits ("$0.000124"), so a little use is
// not shown as nothing. 500,000 quota = $1: six decimals are exact.
export function dollars(quota) {
  const sign = quota < 0 ? "-" : "";
  const micro = Math.abs(quota) * 2;  // millionths of a dollar, exact
  const whole = Math.floor(micro / 1_000_000);
  let fraction = String(micro % 1_000_000).padStart(6, "0");
  fraction = micro >= 10_000 ? fraction.slice(0, 2) : fraction.replace(/0+$/, "").padEnd(2, "0");
  return `${sign}$${whole.toLocaleString("en-US")}.${fraction}`;
}

// "12.5" (USD, as a person types it) -> 6,250,000 quota; null when it is not an amount.
export function quotaOfDollars(text) {
  const match = /^\s*\$?\s*(\d{1,9})(?:\.(\d{0,6}))?\s*$/.exec(text);
  if (!match) return null;
  const micro = Number(match[1]) * 1_000_000 + Number((match[2] || "").padEnd(6, "0"));
  return micro % 2 === 0 ? micro / 2 : null;  // 1 quota = $0.000002
}

// Seconds since the epoch -> "2026-11-29 14:03" (UTC).
export function utcMinute(seconds) {
  return new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " ");
}

// A <input type=date> value -> the first second of that UTC day, or null.
export function utcDayStart(value) {
  if (!value) return null;
  const [year, month, day] = value.split("-").map(Number);
  return Date.UTC(year, month - 1, day) / 1000;
}
