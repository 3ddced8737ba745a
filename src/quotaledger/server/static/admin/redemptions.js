// Redemption codes: create a batch (shown once, with copy and a CSV download made in the
// page: the server keeps only hashes), the list with each code's state, disable.

import { dollars, getJSON, quotaOfDollars, utcDayStart, utcMinute, wireCopyButtons } from "../api.js";
import { button, cell, el, fillRows, formValues, report, send } from "./common.js";

let download = null;

function showCodes(codes, quota, name) {
  document.getElementById("codes-value").textContent = codes.join("\n");
  const lines = ["code,usd,name", ...codes.map((code) => `${code},${dollars(quota).slice(1)},"${name.replaceAll('"', '""')}"`)];
  if (download) URL.revokeObjectURL(download);
  download = URL.createObjectURL(new Blob([`${lines.join("\r\n")}\r\n`], { type: "text/csv" }));
  const card = document.getElementById("codes-card");
  card.hidden = false;
  card.querySelector("[data-copy-target]").focus();
}

document.getElementById("codes-download").addEventListener("click", () => {
  const link = el("a", { href: download, download: "redemption-codes.csv", hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
});

async function disable(code) {
  if (!window.confirm(`Disable code ${code.hint}? It can no longer be redeemed.`)) return;
  const answer = await send("PUT", "/api/redemption/?status_only=true", { id: code.id, status: 2 });
  if (report(answer, `Code ${code.hint} disabled`)) load();
}

async function load() {
  const answer = await getJSON("/api/redemption/?page_size=100");
  if (!report(answer)) return;
  fillRows(document.getElementById("code-rows"), answer.data.items, (code) => [
    cell(code.id, "num"), code.name, cell(`qlr-…${code.hint.replace(/^…/, "")}`, "mono"),
    cell(dollars(code.quota), "num"), code.state, code.redeemed_by ?? "", utcMinute(code.created_time),
    code.expired_time ? utcMinute(code.expired_time) : "never",
    el("td", { class: "row-actions" }, code.state === "unused"
      ? button("Disable", () => disable(code), "danger-ghost", { "aria-label": `Disable code ${code.id}` }) : ""),
  ]);
  document.getElementById("code-count").textContent = `${answer.data.total} codes`;
}

document.getElementById("code-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const values = formValues(event.target);
  const quota = quotaOfDollars(values.usd || "");
  if (!quota) { report({ ok: false, message: "Give the value of each code in USD, such as 10." }); return; }
  const expires = utcDayStart(values.expires);
  const body = { name: values.name || "", count: Number(values.count || 1), quota, expired_time: expires ? expires + 86_400 : 0 };
  const answer = await send("POST", "/api/redemption/", body);
  if (report(answer, `${body.count} codes created`)) { showCodes(answer.data, quota, body.name); event.target.reset(); load(); }
});
wireCopyButtons();
load();
