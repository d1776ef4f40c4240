// Savings recommendations card of the site page: open recommendations with
// their estimate and Apply and Dismiss buttons, applied ones with the
// estimated and achieved saving, and dismissed ones folded away. The server
// writes each message and note in the request language.

import { apiGet, apiPost } from "./api.js";
import { h, fill } from "./dom.js";
import { currentLang, onLangChange, t } from "./i18n.js";
import { formatNumber, formatTime } from "./format.js";

/**
 * "28.8 kWh · 7.20 EUR", the kWh alone without an amount of money, or the
 * money alone when no energy is saved (a load moved to off-peak hours).
 */
function savingText(kwh, money, currency) {
  const energy = `${new Intl.NumberFormat(currentLang(), { minimumFractionDigits: 1, maximumFractionDigits: 1 }).format(kwh)} kWh`;
  if (money === null || money === undefined) return energy;
  const amount = `${new Intl.NumberFormat(currentLang(), { minimumFractionDigits: 2, maximumFractionDigits: 3 }).format(Number(money))} ${currency}`;
  if (kwh === 0) return amount;
  return `${energy} · ${amount}`;
}

function estimateLine(recommendation) {
  const { kwh_per_month: kwh, money_per_month: money, currency } = recommendation.estimate;
  return h("p", { class: "recommendation-estimate", "data-field": "estimate" }, t("recommendations.estimate", { value: savingText(kwh, money, currency) }));
}

function achievedLines(recommendation) {
  const achieved = recommendation.achieved;
  if (achieved) {
    const value = savingText(achieved.kwh_per_month, achieved.money_per_month, recommendation.estimate.currency);
    return [
      h("p", { class: "recommendation-achieved", "data-field": "achieved" },
        t("recommendations.achieved", { value, days: formatNumber(achieved.measured_days, 1) })),
      achieved.per_unit_of_work ? h("p", { class: "hint" }, t("recommendations.per_work")) : null,
    ];
  }
  if (recommendation.achieved_note) {
    return [h("p", { class: "hint", "data-field": "achieved-note", "data-note": recommendation.achieved_note.code }, recommendation.achieved_note.message)];
  }
  return [];
}

function item(recommendation, children) {
  return h("li", {
    class: "recommendation-item",
    "data-recommendation-id": String(recommendation.id),
    "data-action-type": recommendation.action.type,
    "data-status": recommendation.status,
  },
  h("p", { class: "recommendation-message", "data-field": "message" }, recommendation.message),
  children);
}

/**
 * Renders the recommendations card of the site `siteId` into `container`.
 */
export function mountRecommendationPanel(container, siteId) {
  const base = `/api/v1/sites/${encodeURIComponent(siteId)}/recommendations`;
  const state = { body: null, error: null, notice: null, busy: false };
  const title = h("h2", {});
  const intro = h("p", { class: "hint" });
  const runButton = h("button", { type: "button", "data-action": "run-recommendations" });
  const message = h("div", { id: "recommendation-message", role: "status" });
  const lists = h("div", { id: "recommendation-lists" });
  fill(container, title, intro, h("div", { class: "chart-controls" }, runButton), message, lists);

  const act = async (work) => {
    state.busy = true;
    state.notice = null;
    state.error = null;
    render();
    try {
      state.notice = await work();
      state.body = await apiGet(base);
    } catch (error) {
      state.error = error.message;
    }
    state.busy = false;
    render();
  };

  const decide = (recommendation, verb) =>
    act(async () => {
      await apiPost(`${base}/${recommendation.id}/${verb}`);
      return null;
    });

  const runNow = () =>
    act(async () => {
      const run = await apiPost(`${base}/run`);
      return t("recommendations.run_done", { count: run.recommendations, created: run.created, refreshed: run.refreshed, decided: run.decided, withdrawn: run.withdrawn });
    });

  const openItem = (recommendation) => item(recommendation, [
    estimateLine(recommendation),
    h("div", { class: "recommendation-buttons" },
      h("button", {
        type: "button",
        class: "button-primary",
        "data-action": "apply",
        title: t("recommendations.apply_hint"),
        disabled: state.busy,
        onclick: () => decide(recommendation, "apply"),
      }, t("recommendations.apply")),
      h("button", {
        type: "button",
        "data-action": "dismiss",
        title: t("recommendations.dismiss_hint"),
        disabled: state.busy,
        onclick: () => decide(recommendation, "dismiss"),
      }, t("recommendations.dismiss"))),
  ]);

  const appliedItem = (recommendation) => item(recommendation, [
    estimateLine(recommendation),
    ...achievedLines(recommendation),
    h("p", { class: "hint" }, t("recommendations.applied_by", { time: formatTime(recommendation.decided_ms), user: recommendation.decided_by ?? "" })),
  ]);

  const dismissedItem = (recommendation) => item(recommendation, [
    estimateLine(recommendation),
    h("p", { class: "hint" }, t("recommendations.dismissed_by", { time: formatTime(recommendation.decided_ms), user: recommendation.decided_by ?? "" })),
  ]);

  const withdrawnItem = (recommendation) => item(recommendation, [
    estimateLine(recommendation),
    h("p", { class: "hint" }, t("recommendations.withdrawn_at", { time: formatTime(recommendation.decided_ms) })),
  ]);

  const section = (id, heading, entries, render, emptyKey) => h("section", { class: "recommendation-section" },
    h("h3", {}, heading),
    entries.length === 0
      ? h("p", { class: "hint", "data-recommendations": "none" }, t(emptyKey))
      : h("ul", { id, class: "recommendation-list" }, entries.map(render)));

  const renderLists = () => {
    if (!state.body) {
      fill(lists, state.error ? null : h("p", { class: "hint" }, t("recommendations.loading")));
      return;
    }
    const byStatus = (status) => state.body.recommendations.filter((recommendation) => recommendation.status === status);
    // Dismissed and withdrawn ones are history: folded away under their count.
    const folded = (status, titleKey, render) => {
      const entries = byStatus(status);
      return entries.length === 0 ? null : h("details", { class: "recommendation-section" },
        h("summary", {}, t(titleKey, { count: entries.length })),
        h("ul", { id: `recommendation-${status}`, class: "recommendation-list" }, entries.map(render)));
    };
    fill(lists,
      section("recommendation-open", t("recommendations.open"), byStatus("open"), openItem, "recommendations.none_open"),
      section("recommendation-applied", t("recommendations.applied"), byStatus("applied"), appliedItem, "recommendations.none_applied"),
      folded("dismissed", "recommendations.dismissed", dismissedItem),
      folded("withdrawn", "recommendations.withdrawn", withdrawnItem));
  };

  const render = () => {
    title.textContent = t("recommendations.title");
    intro.textContent = t("recommendations.intro");
    runButton.textContent = state.busy ? t("recommendations.running") : t("recommendations.run");
    runButton.disabled = state.busy;
    runButton.onclick = runNow;
    if (state.error) {
      fill(message, h("p", { class: "alert", role: "alert" }, state.error));
    } else if (state.notice) {
      fill(message, h("p", { class: "notice" }, state.notice));
    } else {
      fill(message);
    }
    renderLists();
  };

  const load = async () => {
    state.error = null;
    render();
    try {
      state.body = await apiGet(base);
    } catch (error) {
      state.error = error.message;
    }
    render();
  };

  onLangChange(() => {
    state.notice = null;
    load();
  });
  load();
}
