// Budget and demand warnings of a site, from /api/v1/sites/{id}/warnings.
// The server writes each message in the request language.

import { apiGet } from "./api.js";
import { h } from "./dom.js";
import { t } from "./i18n.js";

export async function fetchWarnings(siteId) {
  return apiGet(`/api/v1/sites/${encodeURIComponent(siteId)}/warnings`);
}

function hasLimits(body) {
  return body.monthly_budget_kwh !== null || body.monthly_budget_amount !== null || body.demand_limit_kw !== null;
}

/**
 * Returns a list of the warnings, or with `showEmpty` a line saying there is
 * none (or that no limit is set). Returns null when there is nothing to show.
 */
export function warningList(body, showEmpty) {
  if (body.warnings.length > 0) {
    return h("ul", { class: "warning-list", "data-site-warnings": body.site },
      body.warnings.map((warning) => h("li", { class: "alert", "data-warning-kind": warning.kind }, warning.message)));
  }
  if (!showEmpty) return null;
  return h("p", { class: "hint", "data-site-warnings": body.site }, t(hasLimits(body) ? "warnings.none" : "warnings.no_limits"));
}
