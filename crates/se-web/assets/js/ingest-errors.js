// Ingest errors: rejected values counted by device and reason, and the most
// recent ones with the value and the reason.

import { apiGet } from "./api.js";
import { h, fill } from "./dom.js";
import { formatNumber, formatTime } from "./format.js";
import { onLangChange, t } from "./i18n.js";
import { initPage, showFatal } from "./layout.js";

let report = null;

function filters() {
  const params = new URLSearchParams(location.search);
  return { device: params.get("device") ?? "", reason: params.get("reason") ?? "" };
}

function deviceCell(device) {
  return device
    ? h("a", { href: `/devices/${encodeURIComponent(device)}` }, device)
    : h("span", { class: "muted" }, t("ingest.no_device"));
}

function reasonCell(code, text) {
  return [h("span", {}, text), " ", h("code", { class: "muted" }, code)];
}

function render() {
  const { device, reason } = filters();
  document.getElementById("filter-device").value = device;
  fill(document.getElementById("filter-reason"),
    h("option", { value: "" }, t("ingest.all_reasons")),
    (report?.reasons ?? []).map((entry) => h("option", { value: entry.code, selected: entry.code === reason }, entry.text)));

  const counts = report?.counts ?? [];
  const recent = report?.recent ?? [];
  document.getElementById("counts-table").hidden = counts.length === 0;
  document.getElementById("recent-table").hidden = recent.length === 0;
  document.getElementById("ingest-empty").hidden = counts.length > 0 || recent.length > 0;

  fill(document.getElementById("count-rows"), counts.map((entry) =>
    h("tr", {},
      h("td", { "data-label": t("col.device") }, deviceCell(entry.device)),
      h("td", { "data-label": t("col.reason") }, reasonCell(entry.reason, entry.reason_text)),
      h("td", { "data-label": t("col.count"), class: "number" }, formatNumber(entry.count, 0)),
      h("td", { "data-label": t("col.last_error") }, formatTime(entry.last_at_ms)))));

  fill(document.getElementById("recent-rows"), recent.map((entry) =>
    h("tr", {},
      h("td", { "data-label": t("col.time") }, formatTime(entry.at_ms)),
      h("td", { "data-label": t("col.device") }, deviceCell(entry.device)),
      h("td", { "data-label": t("col.topic") }, h("code", {}, entry.topic)),
      h("td", { "data-label": t("col.field") }, entry.field ?? t("common.none")),
      h("td", { "data-label": t("col.rejected_value") }, h("code", { class: "value-excerpt" }, entry.value)),
      h("td", { "data-label": t("col.reason") }, reasonCell(entry.reason, entry.reason_text)),
      h("td", { "data-label": t("col.detail"), class: "detail" }, entry.detail))));
}

async function load() {
  const { device, reason } = filters();
  const query = new URLSearchParams({ limit: "200" });
  if (device) query.set("device", device);
  if (reason) query.set("reason", reason);
  const message = document.getElementById("ingest-error");
  try {
    report = await apiGet(`/api/v1/ingest/errors?${query}`);
    fill(message);
  } catch (error) {
    if (error.status !== 400) throw error;
    // A bad filter (such as an invalid device id) is shown next to the form.
    report = null;
    fill(message, h("p", { class: "alert", role: "alert" }, error.message));
  }
  render();
}

async function main() {
  await initPage({ active: "ingest-errors", titleKey: "ingest.title" });
  document.getElementById("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    const device = document.getElementById("filter-device").value.trim();
    const reason = document.getElementById("filter-reason").value;
    if (device) params.set("device", device);
    if (reason) params.set("reason", reason);
    history.replaceState(null, "", params.size > 0 ? `?${params}` : location.pathname);
    load().catch(showFatal);
  });
  // Reason texts come from the server in the request language.
  onLangChange(() => load().catch(showFatal));
  await load();
}

main().catch(showFatal);
