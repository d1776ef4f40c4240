// Anomalies card of the site page: what the server's detectors found in the
// last hours, most severe and newest first. Selecting an anomaly draws its
// series from 30 min before to 30 min after it (uPlot), with the anomaly's
// time shaded. The server writes each message in the request language.

import { apiGet } from "./api.js";
import { h, fill } from "./dom.js";
import { formatTime, formatValue, formatNumber } from "./format.js";
import { currentLang, metricLabel, onLangChange, t } from "./i18n.js";

// Windows offered, in hours; the server accepts 1 to 48.
const WINDOWS = [6, 24, 48];
const MARGIN_MS = 30 * 60 * 1000;
const CHART_POINTS = 600;

const LINE_COLOR = "#1f6feb";
const RANGE_COLOR = "#9bbcf0";
const SEGMENT_FILL = "rgba(207, 34, 46, 0.15)";

/** Identity of an anomaly, to keep the selection across reloads. */
function anomalyKey(anomaly) {
  return [anomaly.device, anomaly.channel, anomaly.metric, anomaly.kind, anomaly.start_ms, anomaly.end_ms].join("|");
}

function anomalyItem(anomaly, selected, onSelect) {
  return h("li", {},
    h("button", {
      type: "button",
      class: "anomaly-item",
      "data-anomaly-kind": anomaly.kind,
      "data-severity": anomaly.severity,
      "aria-pressed": String(selected),
      onclick: onSelect,
    },
    h("span", { class: `badge badge-${anomaly.severity}` }, t(`anomalies.severity_${anomaly.severity}`)),
    h("span", { class: "anomaly-message" }, anomaly.message),
    h("time", { class: "anomaly-time", datetime: new Date(anomaly.start_ms).toISOString() }, formatTime(anomaly.start_ms))));
}

/**
 * Renders the anomalies card into `container` for the API path `path`
 * (without the query), such as /api/v1/sites/farm/anomalies.
 */
export function mountAnomalyPanel(container, path) {
  const state = { hours: WINDOWS[0], body: null, error: null, selected: null, chart: null, series: null, seriesError: null };
  const title = h("h2", {});
  const buttons = h("div", { class: "range-buttons", role: "group" });
  const list = h("div", { id: "anomaly-list" });
  const chartTitle = h("h3", { id: "anomaly-chart-title", class: "anomaly-chart-title" });
  const chartMessage = h("p", { id: "anomaly-chart-message", class: "hint" });
  const chartBox = h("div", { id: "anomaly-chart", class: "chart" });
  const chartSection = h("div", { class: "anomaly-chart", hidden: true }, chartTitle, chartMessage, chartBox);
  fill(container, title, h("div", { class: "chart-controls" }, buttons), list, chartSection);

  const size = () => {
    const width = Math.max(280, chartBox.clientWidth);
    return { width, height: width < 600 ? 220 : 280 };
  };

  const destroyChart = () => {
    if (state.chart) {
      state.chart.destroy();
      state.chart = null;
    }
    chartBox.replaceChildren();
  };

  const buildChart = () => {
    destroyChart();
    const anomaly = state.selected;
    const series = state.series;
    if (!anomaly || !series || series.points.length === 0) return;
    const fromSeconds = (anomaly.start_ms - MARGIN_MS) / 1000;
    const toSeconds = (anomaly.end_ms + MARGIN_MS) / 1000;
    const axisFormat = new Intl.DateTimeFormat(currentLang(), { hour: "2-digit", minute: "2-digit" });
    const legendTime = new Intl.DateTimeFormat(currentLang(), { dateStyle: "short", timeStyle: "medium" });
    const valueText = (self, value) => (value === null || value === undefined ? t("common.none") : formatValue(value, series.unit, 2));
    // Shades the anomaly's time under the series. A one-reading anomaly gets
    // at least 6 px, so that it stays visible.
    const shadeSegment = (chart) => {
      const left = chart.valToPos(anomaly.start_ms / 1000, "x", true);
      const right = chart.valToPos(anomaly.end_ms / 1000, "x", true);
      const minimum = 6 * (window.devicePixelRatio || 1);
      const width = Math.max(right - left, minimum);
      const start = left - (width - (right - left)) / 2;
      const context = chart.ctx;
      context.save();
      context.fillStyle = SEGMENT_FILL;
      context.fillRect(start, chart.bbox.top, width, chart.bbox.height);
      context.restore();
    };
    const options = {
      ...size(),
      scales: { x: { time: true, range: () => [fromSeconds, toSeconds] } },
      series: [
        { label: t("col.time"), value: (self, seconds) => (seconds === null ? t("common.none") : legendTime.format(new Date(seconds * 1000))) },
        { label: t("chart.mean"), stroke: LINE_COLOR, width: 2, value: valueText, points: { show: false } },
        { label: t("chart.min"), stroke: RANGE_COLOR, width: 1, dash: [4, 4], value: valueText, points: { show: false } },
        { label: t("chart.max"), stroke: RANGE_COLOR, width: 1, dash: [4, 4], value: valueText, points: { show: false } },
      ],
      axes: [
        // Wide tick spacing keeps the hour-and-minute labels apart.
        { space: 80, values: (self, splits) => splits.map((seconds) => axisFormat.format(new Date(seconds * 1000))) },
        { label: series.unit ? `${metricLabel(series.metric)} (${series.unit})` : metricLabel(series.metric), size: 70,
          values: (self, splits) => splits.map((value) => formatNumber(value, 1)) },
      ],
      hooks: { drawClear: [shadeSegment] },
    };
    const data = [
      series.points.map((point) => point.ts_ms / 1000),
      series.points.map((point) => point.mean),
      series.points.map((point) => point.min),
      series.points.map((point) => point.max),
    ];
    state.chart = new uPlot(options, data, chartBox);
  };

  const renderChart = () => {
    const anomaly = state.selected;
    chartSection.hidden = !anomaly;
    if (!anomaly) {
      destroyChart();
      return;
    }
    chartTitle.textContent = t("anomalies.chart_title", { device: anomaly.device, channel: anomaly.channel, metric: metricLabel(anomaly.metric) });
    if (state.seriesError) {
      chartMessage.textContent = state.seriesError;
      chartMessage.className = "alert";
    } else if (!state.series) {
      chartMessage.textContent = t("common.loading");
      chartMessage.className = "hint";
    } else if (state.series.points.length === 0) {
      chartMessage.textContent = t("anomalies.no_readings");
      chartMessage.className = "hint";
    } else {
      chartMessage.textContent = t("anomalies.shaded");
      chartMessage.className = "hint";
    }
    buildChart();
  };

  const loadSeries = async (anomaly) => {
    state.series = null;
    state.seriesError = null;
    renderChart();
    const query = new URLSearchParams({
      channel: anomaly.channel,
      metric: anomaly.metric,
      from: String(anomaly.start_ms - MARGIN_MS),
      to: String(anomaly.end_ms + MARGIN_MS),
      points: String(CHART_POINTS),
    });
    try {
      const series = await apiGet(`/api/v1/devices/${encodeURIComponent(anomaly.device)}/series?${query}`);
      // A later click may have chosen another anomaly while this one loaded.
      if (state.selected !== anomaly) return;
      state.series = series;
    } catch (error) {
      if (state.selected !== anomaly) return;
      state.seriesError = error.message;
    }
    renderChart();
  };

  const select = (anomaly) => {
    state.selected = anomaly;
    renderList();
    loadSeries(anomaly);
  };

  const renderList = () => {
    if (state.error) {
      fill(list, h("p", { class: "alert", role: "alert" }, state.error));
      return;
    }
    if (!state.body) {
      fill(list, h("p", { class: "hint" }, t("anomalies.loading")));
      return;
    }
    if (state.body.anomalies.length === 0) {
      fill(list, h("p", { class: "hint", "data-anomalies": "none" }, t("anomalies.none", { hours: state.body.hours })));
      return;
    }
    const selectedKey = state.selected ? anomalyKey(state.selected) : null;
    fill(list, h("ul", { class: "anomaly-list" },
      state.body.anomalies.map((anomaly) => anomalyItem(anomaly, anomalyKey(anomaly) === selectedKey, () => select(anomaly)))));
  };

  const render = () => {
    title.textContent = t("anomalies.title");
    fill(buttons, WINDOWS.map((hours) => h("button", {
      type: "button",
      "data-hours": String(hours),
      "aria-pressed": String(hours === state.hours),
      onclick: () => {
        state.hours = hours;
        load();
      },
    }, t("anomalies.window", { hours }))));
    renderList();
    renderChart();
  };

  const load = async () => {
    const previous = state.selected ? anomalyKey(state.selected) : null;
    state.body = null;
    state.error = null;
    render();
    try {
      state.body = await apiGet(`${path}?hours=${state.hours}`);
    } catch (error) {
      state.error = error.message;
    }
    // Keep the selected anomaly when it is still listed, such as after a language change.
    const kept = state.body?.anomalies.find((anomaly) => anomalyKey(anomaly) === previous) ?? null;
    state.selected = kept;
    render();
    if (kept) loadSeries(kept);
  };

  onLangChange(() => load());
  new ResizeObserver(() => state.chart && state.chart.setSize(size())).observe(container);
  load();
}
