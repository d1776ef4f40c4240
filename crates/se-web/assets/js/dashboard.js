// Dashboard: one row per device with its latest power, updated live.

import { apiGet } from "./api.js";
import { h, fill } from "./dom.js";
import { devicePower, formatAgo, formatMoney, formatNumber, formatTime, formatValue, mergeLatest, onlineState } from "./format.js";
import { onLangChange, siteName, t } from "./i18n.js";
import { connectLive, initPage, showFatal } from "./layout.js";
import { fetchWarnings, warningList } from "./warnings.js";

const devices = new Map();

function stateBadge(online) {
  const state = onlineState(online);
  return h("span", { class: `badge badge-${state}` }, t(`state.${state}`));
}

function powerText(device) {
  const power = devicePower(device.latest);
  return power ? formatValue(power.value, power.unit) : t("common.none");
}

function cell(name, labelKey, ...content) {
  return h("td", { "data-cell": name, "data-label": t(labelKey) }, ...content);
}

function renderRow(device) {
  return h("tr", { "data-device": device.id },
    cell("device", "col.device", h("a", { href: `/devices/${encodeURIComponent(device.id)}` }, device.id)),
    cell("power", "col.power", powerText(device)),
    cell("last-reading", "col.last_reading", h("time", { title: formatTime(device.last_seen_ms) }, formatAgo(device.last_seen_ms))),
    cell("state", "col.state", stateBadge(device.online)),
    cell("lost", "col.lost", formatNumber(device.counters.lost, 0)),
    cell("ingest-errors", "col.ingest_errors",
      device.ingest_errors > 0
        ? h("a", { href: `/ingest-errors?device=${encodeURIComponent(device.id)}` }, formatNumber(device.ingest_errors, 0))
        : formatNumber(device.ingest_errors, 0)),
  );
}

function renderSummary() {
  let total = 0;
  for (const device of devices.values()) {
    const power = devicePower(device.latest);
    if (power && power.unit === "W") total += power.value;
  }
  fill(document.getElementById("summary"),
    h("div", { class: "stat" }, h("span", { class: "stat-label" }, t("dashboard.device_count")), h("span", { class: "stat-value", id: "device-count" }, formatNumber(devices.size, 0))),
    h("div", { class: "stat" }, h("span", { class: "stat-label" }, t("dashboard.total_power")), h("span", { class: "stat-value", id: "total-power" }, formatValue(total, "W"))),
  );
}

function render() {
  const body = document.getElementById("device-rows");
  const sorted = [...devices.values()].sort((a, b) => a.id.localeCompare(b.id));
  fill(body, sorted.map(renderRow));
  document.getElementById("empty").hidden = devices.size > 0;
  document.getElementById("device-table").hidden = devices.size === 0;
  renderSummary();
}

async function load() {
  const list = await apiGet("/api/v1/devices");
  devices.clear();
  for (const device of list) devices.set(device.id, device);
  render();
}

// Devices whose updates arrive but that the list leaves out (discovered devices
// not yet approved), with when the list was last fetched for them, in ms.
const unlistedCheckedAt = new Map();
const UNLISTED_RECHECK_MS = 60_000;

function applyUpdate(update) {
  const device = devices.get(update.device);
  if (!device) {
    // A new device: fetch the list again to get its full summary. A device the
    // list leaves out would refetch on every update, so it is rechecked once a minute.
    const checkedAt = unlistedCheckedAt.get(update.device) ?? 0;
    if (Date.now() - checkedAt < UNLISTED_RECHECK_MS) return;
    unlistedCheckedAt.set(update.device, Date.now());
    load().catch(showFatal);
    return;
  }
  mergeLatest(device.latest, update);
  device.last_seen_ms = Math.max(device.last_seen_ms, update.ts_ms);
  const row = document.querySelector(`tr[data-device="${CSS.escape(device.id)}"]`);
  if (row) row.replaceWith(renderRow(device));
  renderSummary();
}

// Site cards: today's energy, cost and CO2 of each visible site, with a link
// to the site's forecast and its budget and demand warnings.
const SITE_REFRESH_MS = 45_000;
let siteCards = [];
// Warnings by site id; the server recomputes them once an hour.
const siteWarnings = new Map();

// Today's kWh: exact, "at least" when part of the day is unknown, or "at
// most" when part of it is estimated from apparent power. With both, the
// value is neither bound, and the two badges explain it.
function kwhText(energy) {
  const value = formatValue(energy.kwh, "kWh", 2);
  if (energy.estimated_kwh > 0) return energy.known ? t("site.kwh_at_most", { value }) : value;
  return energy.known ? value : t("site.kwh_partial", { value });
}

// The demand charge is billed on the month's highest demand, so a day's
// cost leaves it out and the card names the day's peak instead.
function demandNote(cost) {
  const excluded = cost?.excluded_demand ?? [];
  if (excluded.length === 0) return null;
  const peakKw = Math.max(...excluded.map((line) => Number(line.quantity)));
  return h("span", { class: "stat-label", "data-field": "demand-note" },
    t("site.demand_excluded", { value: formatValue(peakKw, "kW", 2) }));
}

function siteCard({ site, energy }) {
  const kwh = kwhText(energy);
  const cost = energy.cost
    ? `${formatMoney(energy.cost.total)} ${energy.cost.currency}`
    : t("site.no_tariff");
  const co2 = energy.co2_kg === null ? t("common.none") : formatValue(energy.co2_kg, "kg", 1);
  return h("div", { class: "stat site-card", "data-site": site.id },
    h("span", { class: "stat-label" }, t("site.today", { name: siteName(site) })),
    h("span", { class: "stat-value", "data-field": "kwh" }, kwh),
    h("span", { class: "stat-label", "data-field": "cost" }, t("site.cost", { value: cost })),
    demandNote(energy.cost),
    h("span", { class: "stat-label", "data-field": "co2" }, t("site.co2", { value: co2 })),
    energy.known ? null : h("span", { class: "badge badge-unknown", "data-field": "unknown" }, t("site.unknown")),
    energy.estimated_kwh > 0
      ? h("span", { class: "badge badge-unknown", "data-field": "estimated" }, t("site.estimated"))
      : null,
    h("a", { href: `/sites/${encodeURIComponent(site.id)}`, "data-field": "forecast-link" }, t("site.forecast_link")),
    siteWarnings.has(site.id) ? warningList(siteWarnings.get(site.id), false) : null);
}

function renderSites() {
  fill(document.getElementById("site-cards"), siteCards.map(siteCard));
}

async function loadSites() {
  const sites = await apiGet("/api/v1/sites");
  const cards = [];
  for (const site of sites) {
    const energy = await apiGet(`/api/v1/sites/${encodeURIComponent(site.id)}/energy?period=today`);
    cards.push({ site, energy });
  }
  siteCards = cards;
  renderSites();
  // Warnings come after the cards because a first forecast can take seconds.
  for (const { site } of cards) {
    try {
      siteWarnings.set(site.id, await fetchWarnings(site.id));
    } catch (error) {
      console.warn(`warnings of site ${site.id}: ${error.message}`);
      siteWarnings.delete(site.id);
    }
  }
  renderSites();
}

async function main() {
  await initPage({ active: "dashboard", titleKey: "dashboard.title" });
  await load();
  await loadSites();
  onLangChange(render);
  onLangChange(() => loadSites().catch(showFatal));
  setInterval(() => loadSites().catch(showFatal), SITE_REFRESH_MS);
  // Relative times ("5 s ago") age while the page stays open.
  setInterval(() => {
    for (const device of devices.values()) {
      const time = document.querySelector(`tr[data-device="${CSS.escape(device.id)}"] [data-cell="last-reading"] time`);
      if (time) time.textContent = formatAgo(device.last_seen_ms);
    }
  }, 5000);
  connectLive({ onUpdate: applyUpdate, onLagged: () => load().catch(showFatal) });
}

main().catch(showFatal);
