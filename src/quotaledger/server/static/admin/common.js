// What the console's pages share: elements built from data as text only (never markup),
// forms read into objects, tables filled row by row, the page's notices, logging out.

import { sendJSON, postJSON, sentence, showError } from "../api.js";

// el("td", {class: "num"}, "12") -> <td class="num">12</td>; strings become text nodes.
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function button(label, onClick, kind = "secondary", extra = {}) {
  return el("button", { type: "button", class: `button small ${kind}`, onclick: onClick, ...extra }, label);
}

// Fill `tbody` with one <tr> per row; `cells(row)` gives the row's cells (nodes or text).
export function fillRows(tbody, rows, cells) {
  tbody.replaceChildren(...rows.map((row) => el("tr", {}, ...cells(row).map(
    (cell) => (cell instanceof Node && cell.tagName === "TD") ? cell : el("td", {}, cell),
  ))));
}

export function cell(text, className) {
  return el("td", { class: className }, text);
}

// The form's fields as an object of trimmed strings; empty ones left out.
export function formValues(form) {
  const found = {};
  for (const [name, value] of new FormData(form).entries()) {
    const text = String(value).trim();
    if (text !== "") found[name] = text;
  }
  return found;
}

const pageError = document.getElementById("page-error");
const pageStatus = document.getElementById("page-status");

export function report(answer, success) {
  if (!answer.ok) {
    showError(pageError, answer.message);
    pageStatus.hidden = true;
    return false;
  }
  showError(pageError, "");
  if (success) {
    pageStatus.textContent = sentence(success);
    pageStatus.hidden = false;
  }
  return true;
}

export function send(method, path, body) {
  return sendJSON(method, path, body);
}

export function query(values) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(values)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  return search.toString();
}

const logout = document.getElementById("logout");
logout?.addEventListener("click", async () => {
  logout.disabled = true;
  const answer = await postJSON("/api/user/logout");
  if (answer.ok) window.location.assign("/login?notice=logged-out");
  else { report(answer); logout.disabled = false; }
});
