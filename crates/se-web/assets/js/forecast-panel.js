// Forecast card shared by the site page and the device page: recent hourly
// energy, the forecast with its prediction interval (uPlot band), the model
// that made it with its backtest accuracy, and notices from the server.

import { apiGet } from "./api.js";
import { h, fill } from "./dom.js";
import { formatNumber } from "./format.js";
import { currentLang, onLangChange, t } from "./i18n.js";

// Horizon buttons: query value and label key.
const HORIZONS = [["24h", "forecast.day_ahead"], ["168h", "forecast.week_ahead"]];

const HISTORY_COLOR = "#1f6feb";
const FORECAST_COLOR = "#d9730d";
const BAND_FILL = "rgba(217, 115, 13, 0.18)";

function modelName(model) {
  const key = `model.${model}`;
  const label = t(key);
  return label === key ? model : label;
}

/** Text such as "MSTL, MAPE 4.1 % over 14 days of backtests". */
export function accuracyText(body) {
  if (!body.model) return "";
  const name = modelName(body.model);
  const chosen = body.accuracy.find((entry) => entry.model === body.model);
  if (!chosen || body.backtest_days === 0) return t("forecast.model_only", { model: name });
  if (body.selection === "mape" && chosen.mape !== null) {
    return t("forecast.model_accuracy", { model: name, mape: formatNumber(chosen.mape, 1), days: body.backtest_days });
  }
  return t("forecast.model_accuracy_mae", { model: name, mae: formatNumber(chosen.mae, 0), days: body.backtest_days });
}

function chartData(body) {
  const xs = [];
  const history = [];
  const predicted = [];
  const upper = [];
  const lower = [];
  for (const point of body.history) {
    xs.push(point.ts_ms / 1000);
    history.push(point.wh);
    predicted.push(null);
    upper.push(null);
    lower.push(null);
  }
  // The forecast line starts at the last measured hour, so the two lines join.
  if (body.history.length > 0 && body.forecast.length > 0) {
    predicted[predicted.length - 1] = history[history.length - 1];
  }
  for (const point of body.forecast) {
    xs.push(point.ts_ms / 1000);
    history.push(null);
    predicted.push(point.predicted);
    upper.push(point.upper);
    lower.push(point.lower);
  }
  return [xs, history, predicted, upper, lower];
}

function accuracyTable(body) {
  if (body.accuracy.length === 0) return null;
  const percent = (value) => (value === null ? t("common.none") : `${formatNumber(value, 1)} %`);
  const rows = body.accuracy.map((entry) => h("tr", { "data-model": entry.model, class: entry.model === body.model ? "chosen" : null },
    h("td", { "data-label": t("forecast.col_model") }, modelName(entry.model)),
    h("td", { "data-label": "MAPE", class: "number" }, percent(entry.mape)),
    h("td", { "data-label": "MAE (Wh)", class: "number" }, formatNumber(entry.mae, 0)),
    h("td", { "data-label": "RMSE (Wh)", class: "number" }, formatNumber(entry.rmse, 0)),
    h("td", { "data-label": t("forecast.col_coverage"), class: "number" },
      entry.interval_coverage === null ? t("common.none") : percent(entry.interval_coverage * 100))));
  return h("details", { class: "forecast-models" },
    h("summary", {}, t("forecast.all_models")),
    h("table", { class: "data-table responsive" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, t("forecast.col_model")),
        h("th", { scope: "col", class: "number" }, "MAPE"),
        h("th", { scope: "col", class: "number" }, "MAE (Wh)"),
        h("th", { scope: "col", class: "number" }, "RMSE (Wh)"),
        h("th", { scope: "col", class: "number" }, t("forecast.col_coverage")))),
      h("tbody", {}, rows)));
}

/**
 * Renders a forecast card into `container` for the API path `path` (without
 * the query), such as /api/v1/sites/farm/forecast.
 */
export function mountForecastPanel(container, path) {
  const state = { horizon: "24h", body: null, chart: null, error: null };
  const chartBox = h("div", { id: "forecast-chart", class: "chart" });
  const buttons = h("div", { class: "range-buttons", role: "group" });
  const model = h("p", { id: "forecast-model", class: "forecast-model" });
  const interval = h("p", { class: "hint", "data-field": "interval" });
  const notices = h("div", { id: "forecast-notices" });
  const details = h("div", {});
  const title = h("h2", {});
  fill(container, title, h("div", { class: "chart-controls" }, buttons), model, notices, chartBox, interval, details);

  const size = () => {
    const width = Math.max(280, chartBox.clientWidth);
    return { width, height: width < 600 ? 240 : 320 };
  };

  const buildChart = () => {
    if (state.chart) {
      state.chart.destroy();
      state.chart = null;
    }
    chartBox.replaceChildren();
    const body = state.body;
    if (!body || body.history.length === 0) return;
    const axisFormat = new Intl.DateTimeFormat(currentLang(), { weekday: "short", hour: "2-digit" });
    const legendTime = new Intl.DateTimeFormat(currentLang(), { dateStyle: "short", timeStyle: "short" });
    const valueText = (self, value) => (value === null || value === undefined ? t("common.none") : `${formatNumber(value, 0)} Wh`);
    const options = {
      ...size(),
      scales: { x: { time: true } },
      series: [
        { label: t("col.time"), value: (self, seconds) => (seconds === null ? t("common.none") : legendTime.format(new Date(seconds * 1000))) },
        { label: t("forecast.history"), stroke: HISTORY_COLOR, width: 2, value: valueText, points: { show: false } },
        { label: t("forecast.predicted"), stroke: FORECAST_COLOR, width: 2, value: valueText, points: { show: false } },
        { label: t("forecast.upper"), stroke: BAND_FILL, width: 1, value: valueText, points: { show: false } },
        { label: t("forecast.lower"), stroke: BAND_FILL, width: 1, value: valueText, points: { show: false } },
      ],
      bands: [{ series: [3, 4], fill: BAND_FILL }],
      axes: [
        // Wide tick spacing keeps the day-and-hour labels apart.
        { space: 90, values: (self, splits) => splits.map((seconds) => axisFormat.format(new Date(seconds * 1000))) },
        { label: t("forecast.unit"), size: 70, values: (self, splits) => splits.map((value) => formatNumber(value, 0)) },
      ],
    };
    state.chart = new uPlot(options, chartData(body), chartBox);
  };

  const render = () => {
    title.textContent = t("forecast.title");
    fill(buttons, HORIZONS.map(([value, key]) => h("button", {
      type: "button",
      "data-horizon": value,
      "aria-pressed": String(value === state.horizon),
      onclick: () => {
        state.horizon = value;
        load();
      },
    }, t(key))));
    const body = state.body;
    if (state.error) {
      model.textContent = "";
      interval.textContent = "";
      fill(notices, h("p", { class: "alert", role: "alert" }, state.error));
      fill(details);
      buildChart();
      return;
    }
    if (!body) {
      model.textContent = t("forecast.loading");
      interval.textContent = "";
      fill(notices);
      fill(details);
      return;
    }
    model.textContent = accuracyText(body);
    interval.textContent = body.level === null ? "" : t("forecast.interval", { level: formatNumber(body.level * 100, 0) });
    fill(notices, body.notices.map((notice) => h("p", { class: "notice", "data-notice": notice.code }, notice.message)));
    fill(details, accuracyTable(body));
    buildChart();
  };

  const load = async () => {
    state.body = null;
    state.error = null;
    render();
    try {
      state.body = await apiGet(`${path}?horizon=${state.horizon}`);
    } catch (error) {
      state.error = error.message;
    }
    render();
  };

  onLangChange(() => load());
  new ResizeObserver(() => state.chart && state.chart.setSize(size())).observe(container);
  load();
}
