// Site page: budget and demand warnings, savings recommendations, anomalies,
// the site's forecast and its devices.

import { apiGet } from "./api.js";
import { h, fill } from "./dom.js";
import { onLangChange, siteName, t } from "./i18n.js";
import { initPage, showFatal } from "./layout.js";
import { mountAnomalyPanel } from "./anomaly-panel.js";
import { mountForecastPanel } from "./forecast-panel.js";
import { mountRecommendationPanel } from "./recommendation-panel.js";
import { fetchWarnings, warningList } from "./warnings.js";

const siteId = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] ?? "");

async function renderWarnings() {
  const box = document.getElementById("warnings");
  fill(box, h("p", { class: "hint" }, t("forecast.loading")));
  try {
    fill(box, warningList(await fetchWarnings(siteId), true));
  } catch (error) {
    fill(box, h("p", { class: "alert", role: "alert" }, error.message));
  }
}

async function main() {
  await initPage({ active: null, titleKey: "site.forecast_link" });
  let site;
  try {
    site = await apiGet(`/api/v1/sites/${encodeURIComponent(siteId)}`);
  } catch (error) {
    if (error.status === 404 || error.status === 400 || error.status === 403) {
      // A building owner gets 403 for a site that is not theirs, and the server's message explains it.
      const message = error.status === 403 ? error.message : t("site.not_found");
      document.getElementById("site-content").hidden = true;
      fill(document.getElementById("site-error"), h("p", { class: "alert", role: "alert" }, message));
      return;
    }
    throw error;
  }
  document.getElementById("site-name").textContent = siteName(site);
  document.title = `${siteName(site)} · ${t("app.title")}`;
  fill(document.getElementById("site-devices"), site.devices.map((device) =>
    h("li", {}, h("a", { href: `/devices/${encodeURIComponent(device)}` }, device))));
  mountRecommendationPanel(document.getElementById("recommendations-card"), siteId);
  mountAnomalyPanel(document.getElementById("anomalies-card"), `/api/v1/sites/${encodeURIComponent(siteId)}/anomalies`);
  mountForecastPanel(document.getElementById("forecast-card"), `/api/v1/sites/${encodeURIComponent(siteId)}/forecast`);
  await renderWarnings();
  onLangChange(() => renderWarnings());
}

main().catch(showFatal);
