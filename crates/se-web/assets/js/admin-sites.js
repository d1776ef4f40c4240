// Admin page of sites: devices that announced themselves and wait for
// review, settings, tariff editor with server-side validation, and the site
// of each device.

import { apiGet, apiPost, apiPut, apiPutText } from "./api.js";
import { h, fill } from "./dom.js";
import { formatTime } from "./format.js";
import { onLangChange, siteName, t } from "./i18n.js";
import { initPage, showFatal } from "./layout.js";

let sites = [];
let devices = [];
let discovered = [];

function field(name, labelKey, value, attributes = {}) {
  return h("label", {},
    h("span", {}, t(labelKey)), " ",
    h("input", { name, value: value ?? "", ...attributes }));
}

function showMessage(box, ok, text) {
  box.className = ok ? "notice" : "alert";
  box.setAttribute("role", ok ? "status" : "alert");
  box.textContent = text;
  box.hidden = false;
}

function siteForm(site) {
  const message = h("p", { "data-field": "message", hidden: true });
  const tariff = h("textarea", { name: "tariff", rows: "8", cols: "60", spellcheck: "false" }, site.tariff_json ?? "");
  const saveSettings = async (event) => {
    event.preventDefault();
    const form = event.target.closest("form");
    const co2 = form.elements.co2.value.trim();
    const optionalNumber = (name) => {
      const text = form.elements[name].value.trim();
      return text === "" ? null : Number(text);
    };
    try {
      await apiPut(`/api/v1/sites/${encodeURIComponent(site.id)}`, {
        name: form.elements.name.value,
        time_zone: form.elements.time_zone.value.trim(),
        currency: form.elements.currency.value.trim().toUpperCase(),
        co2_g_per_kwh: co2 === "" ? null : Number(co2),
        monthly_budget_kwh: optionalNumber("budget_kwh"),
        monthly_budget_amount: optionalNumber("budget_amount"),
        demand_limit_kw: optionalNumber("demand_limit"),
      });
      showMessage(message, true, t("admin_sites.saved"));
    } catch (error) {
      showMessage(message, false, error.message);
    }
  };
  const saveTariff = async () => {
    try {
      const saved = await apiPutText(`/api/v1/sites/${encodeURIComponent(site.id)}/tariff`, tariff.value);
      site.currency = saved.currency;
      showMessage(message, true, t("admin_sites.tariff_saved"));
    } catch (error) {
      showMessage(message, false, error.message);
    }
  };
  return h("div", { class: "card", "data-site": site.id },
    h("h2", {}, `${siteName(site)} (${site.id})`),
    h("form", { onsubmit: saveSettings },
      field("name", "admin_sites.name", site.name, { required: true }),
      field("time_zone", "admin_sites.time_zone", site.time_zone, { required: true }),
      field("currency", "admin_sites.currency", site.currency, { required: true, size: "4" }),
      field("co2", "admin_sites.co2", site.co2_g_per_kwh, { inputmode: "decimal" }),
      field("budget_kwh", "admin_sites.budget_kwh", site.monthly_budget_kwh, { inputmode: "decimal" }),
      h("label", {},
        h("span", {}, t("admin_sites.budget_amount", { currency: site.currency })), " ",
        h("input", { name: "budget_amount", value: site.monthly_budget_amount ?? "", inputmode: "decimal" })),
      field("demand_limit", "admin_sites.demand_limit", site.demand_limit_kw, { inputmode: "decimal" }),
      h("p", { class: "hint" }, t("admin_sites.limits_hint")),
      h("button", { type: "submit", "data-action": "save-settings" }, t("admin_sites.save_settings"))),
    h("label", {}, h("span", {}, t("admin_sites.tariff")), h("br"), tariff),
    h("p", { class: "hint" }, t("admin_sites.tariff_hint")),
    h("button", { type: "button", "data-action": "save-tariff", onclick: saveTariff }, t("admin_sites.save_tariff")),
    message);
}

function deviceRow(device) {
  const select = h("select", { "data-device": device.id },
    sites.map((site) => h("option", { value: site.id, selected: site.devices.includes(device.id) ? true : null }, siteName(site))));
  select.addEventListener("change", async () => {
    try {
      await apiPut(`/api/v1/devices/${encodeURIComponent(device.id)}/site`, { site: select.value });
      await load();
    } catch (error) {
      showFatal(error);
    }
  });
  return h("tr", {}, h("td", {}, device.id), h("td", {}, select));
}

// Approve sends the chosen site with the approval, so the device appears in its site at once.
function discoveredRow(found) {
  const id = encodeURIComponent(found.device);
  const select = h("select", { "data-discovered-site": found.device },
    sites.map((site) => h("option", { value: site.id }, siteName(site))));
  const review = async (action, body, messageKey) => {
    const message = document.getElementById("discovered-message");
    try {
      await apiPost(`/api/v1/discovered/${id}/${action}`, body);
      await load();
      showMessage(message, true, t(messageKey, { device: found.device }));
    } catch (error) {
      showMessage(message, false, error.message);
    }
  };
  return h("tr", { "data-discovered": found.device },
    h("td", {}, found.device),
    h("td", {}, found.name ?? t("common.none")),
    h("td", {}, found.model ?? t("common.none")),
    h("td", {}, found.format),
    h("td", {}, formatTime(found.first_seen_ms)),
    h("td", {}, formatTime(found.last_seen_ms)),
    h("td", {}, select),
    h("td", {},
      h("button", { type: "button", "data-action": "approve", onclick: () => review("approve", { site: select.value }, "discovered.approved") }, t("discovered.approve")),
      " ",
      h("button", { type: "button", "data-action": "ignore", onclick: () => review("ignore", {}, "discovered.ignored") }, t("discovered.ignore"))));
}

function render() {
  fill(document.getElementById("discovered-devices"), discovered.map(discoveredRow));
  document.getElementById("discovered-table").hidden = discovered.length === 0;
  document.getElementById("discovered-none").hidden = discovered.length > 0;
  fill(document.getElementById("site-list"), sites.map(siteForm));
  fill(document.getElementById("device-sites"), devices.map(deviceRow));
}

async function load() {
  sites = await apiGet("/api/v1/sites");
  devices = await apiGet("/api/v1/devices");
  discovered = await apiGet("/api/v1/discovered");
  render();
}

async function createSite(event) {
  event.preventDefault();
  const id = event.target.elements.id.value.trim();
  try {
    await apiPut(`/api/v1/sites/${encodeURIComponent(id)}`, { name: id, time_zone: "UTC", currency: "EUR", co2_g_per_kwh: null });
    event.target.reset();
    await load();
  } catch (error) {
    showFatal(error);
  }
}

async function main() {
  await initPage({ active: "admin-sites", titleKey: "admin_sites.title" });
  document.getElementById("new-site").addEventListener("submit", createSite);
  await load();
  onLangChange(render);
}

main().catch(showFatal);
