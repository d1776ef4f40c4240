// Admin page of sites: settings, tariff editor with server-side validation,
// and the site of each device.

import { apiGet, apiPut, apiPutText } from "./api.js";
import { h, fill } from "./dom.js";
import { onLangChange, t } from "./i18n.js";
import { initPage, showFatal } from "./layout.js";

let sites = [];
let devices = [];

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
    try {
      await apiPut(`/api/v1/sites/${encodeURIComponent(site.id)}`, {
        name: form.elements.name.value,
        time_zone: form.elements.time_zone.value.trim(),
        currency: form.elements.currency.value.trim().toUpperCase(),
        co2_g_per_kwh: co2 === "" ? null : Number(co2),
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
    h("h2", {}, `${site.name} (${site.id})`),
    h("form", { onsubmit: saveSettings },
      field("name", "admin_sites.name", site.name, { required: true }),
      field("time_zone", "admin_sites.time_zone", site.time_zone, { required: true }),
      field("currency", "admin_sites.currency", site.currency, { required: true, size: "4" }),
      field("co2", "admin_sites.co2", site.co2_g_per_kwh, { inputmode: "decimal" }),
      h("button", { type: "submit", "data-action": "save-settings" }, t("admin_sites.save_settings"))),
    h("label", {}, h("span", {}, t("admin_sites.tariff")), h("br"), tariff),
    h("p", { class: "hint" }, t("admin_sites.tariff_hint")),
    h("button", { type: "button", "data-action": "save-tariff", onclick: saveTariff }, t("admin_sites.save_tariff")),
    message);
}

function deviceRow(device) {
  const select = h("select", { "data-device": device.id },
    sites.map((site) => h("option", { value: site.id, selected: site.devices.includes(device.id) ? true : null }, site.name)));
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

function render() {
  fill(document.getElementById("site-list"), sites.map(siteForm));
  fill(document.getElementById("device-sites"), devices.map(deviceRow));
}

async function load() {
  sites = await apiGet("/api/v1/sites");
  devices = await apiGet("/api/v1/devices");
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
