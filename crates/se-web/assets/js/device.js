// Device page: counters, latest values and a history chart (uPlot) that
// follows live updates.

import { apiGet } from "./api.js";
import { h, fill } from "./dom.js";
import { formatAgo, formatNumber, formatTime, formatValue, mergeLatest, onlineState } from "./format.js";
import { currentLang, metricLabel, onLangChange, t } from "./i18n.js";
import { connectLive, initPage, showFatal } from "./layout.js";
import { mountForecastPanel } from "./forecast-panel.js";

const RANGE_MS = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3 };

const deviceId = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] ?? "");
const view = { device: null, channel: null, metric: null, range: "1h", unit: "", chart: null, data: [[], [], [], []] };

// Preferred metric for the first chart, in order.
const PREFERRED_METRICS = ["power_w", "apparent_power_va", "current_a", "temperature_c"];

function renderFacts() {
  const device = view.device;
  const state = onlineState(device.online);
  const fact = (labelKey, value, id, extraClass = "") =>
    h("div", { class: "stat" }, h("span", { class: "stat-label" }, t(labelKey)), h("span", { class: `stat-value ${extraClass}`, id }, value));
  fill(document.getElementById("facts"),
    fact("col.state", h("span", { class: `badge badge-${state}` }, t(`state.${state}`)), "fact-state"),
    fact("device.last_seen", h("time", { title: formatTime(device.last_seen_ms) }, formatAgo(device.last_seen_ms)), "fact-last-seen", "small"),
    fact("device.first_seen", formatTime(device.first_seen_ms), "fact-first-seen", "small"),
    fact("col.lost", formatNumber(device.counters.lost, 0), "fact-lost"),
    fact("device.duplicates", formatNumber(device.counters.duplicates, 0), "fact-duplicates"),
    fact("device.restarts", formatNumber(device.counters.restarts, 0), "fact-restarts"),
    fact("col.ingest_errors", formatNumber(device.ingest_errors, 0), "fact-ingest-errors"),
  );
}

function renderLatest() {
  const rows = [...view.device.latest]
    .sort((a, b) => a.channel.localeCompare(b.channel) || a.metric.localeCompare(b.metric))
    .map((entry) => h("tr", { "data-channel": entry.channel, "data-metric": entry.metric },
      h("td", { "data-label": t("col.channel") }, entry.channel),
      h("td", { "data-label": t("col.metric") }, metricLabel(entry.metric)),
      h("td", { "data-label": t("col.value"), class: "number", "data-cell": "value" }, formatValue(entry.value, entry.unit, 2)),
      h("td", { "data-label": t("col.time") }, h("time", { title: formatTime(entry.ts_ms) }, formatAgo(entry.ts_ms)))));
  fill(document.getElementById("latest-rows"), rows);
}

function channels() {
  return [...new Set(view.device.latest.map((entry) => entry.channel))].sort();
}

function metricsOf(channel) {
  return [...new Set(view.device.latest.filter((entry) => entry.channel === channel).map((entry) => entry.metric))].sort();
}

function chooseDefaults() {
  const all = channels();
  if (!view.channel || !all.includes(view.channel)) {
    const withPower = all.find((channel) => metricsOf(channel).includes("power_w"));
    view.channel = withPower ?? all[0] ?? null;
  }
  const metrics = view.channel ? metricsOf(view.channel) : [];
  if (!view.metric || !metrics.includes(view.metric)) {
    view.metric = PREFERRED_METRICS.find((metric) => metrics.includes(metric)) ?? metrics[0] ?? null;
  }
}

function renderSelectors() {
  const channelSelect = document.getElementById("channel-select");
  const metricSelect = document.getElementById("metric-select");
  fill(channelSelect, channels().map((channel) => h("option", { value: channel, selected: channel === view.channel }, channel)));
  fill(metricSelect, (view.channel ? metricsOf(view.channel) : []).map((metric) =>
    h("option", { value: metric, selected: metric === view.metric }, metricLabel(metric))));
  for (const button of document.querySelectorAll("[data-range]")) {
    button.setAttribute("aria-pressed", String(button.dataset.range === view.range));
  }
}

function axisTimeFormat() {
  const options = view.range === "7d"
    ? { weekday: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }
    : { hour: "2-digit", minute: "2-digit" };
  return new Intl.DateTimeFormat(currentLang(), options);
}

function chartSize() {
  const container = document.getElementById("chart");
  const width = Math.max(280, container.clientWidth);
  const height = width < 600 ? 240 : 340;
  return { width, height };
}

function buildChart() {
  const container = document.getElementById("chart");
  if (view.chart) {
    view.chart.destroy();
    view.chart = null;
  }
  container.replaceChildren();
  const unit = view.unit;
  const axisFormat = axisTimeFormat();
  const legendTime = new Intl.DateTimeFormat(currentLang(), { dateStyle: "short", timeStyle: "medium" });
  const valueText = (self, value) => (value === null || value === undefined ? t("common.none") : formatValue(value, unit, 2));
  const options = {
    ...chartSize(),
    scales: { x: { time: true } },
    series: [
      { label: t("col.time"), value: (self, seconds) => (seconds === null ? t("common.none") : legendTime.format(new Date(seconds * 1000))) },
      { label: t("chart.mean"), stroke: "#1f6feb", width: 2, value: valueText, points: { show: false } },
      { label: t("chart.min"), stroke: "#9bbcf0", width: 1, dash: [4, 4], value: valueText, points: { show: false } },
      { label: t("chart.max"), stroke: "#9bbcf0", width: 1, dash: [4, 4], value: valueText, points: { show: false } },
    ],
    axes: [
      { values: (self, splits) => splits.map((seconds) => axisFormat.format(new Date(seconds * 1000))) },
      { label: unit ? `${metricLabel(view.metric)} (${unit})` : metricLabel(view.metric), size: 70,
        values: (self, splits) => splits.map((value) => formatNumber(value, 2)) },
    ],
  };
  view.chart = new uPlot(options, view.data, container);
}

async function loadSeries() {
  chooseDefaults();
  renderSelectors();
  const empty = document.getElementById("chart-empty");
  if (!view.channel || !view.metric) {
    view.data = [[], [], [], []];
    empty.hidden = false;
    buildChart();
    return;
  }
  const query = new URLSearchParams({ channel: view.channel, metric: view.metric, range: view.range, points: "600" });
  const series = await apiGet(`/api/v1/devices/${encodeURIComponent(deviceId)}/series?${query}`);
  view.unit = series.unit;
  view.data = [
    series.points.map((point) => point.ts_ms / 1000),
    series.points.map((point) => point.mean),
    series.points.map((point) => point.min),
    series.points.map((point) => point.max),
  ];
  empty.hidden = series.points.length > 0;
  buildChart();
}

function appendLive(update) {
  const value = update.values.find((entry) => entry.channel === view.channel && entry.metric === view.metric);
  if (!value || !view.chart) return;
  const seconds = update.ts_ms / 1000;
  const [xs, means, mins, maxs] = view.data;
  if (xs.length > 0 && seconds <= xs[xs.length - 1]) return;
  xs.push(seconds);
  means.push(value.value);
  mins.push(value.value);
  maxs.push(value.value);
  // Keep only the chosen range in view.
  const start = seconds - RANGE_MS[view.range] / 1000;
  while (xs.length > 0 && xs[0] < start) {
    for (const column of view.data) column.shift();
  }
  document.getElementById("chart-empty").hidden = true;
  view.chart.setData(view.data);
}

function applyUpdate(update) {
  if (update.device !== deviceId || !view.device) return;
  const before = channels().join() + "|" + (view.channel ? metricsOf(view.channel).join() : "");
  mergeLatest(view.device.latest, update);
  view.device.last_seen_ms = Math.max(view.device.last_seen_ms, update.ts_ms);
  renderFacts();
  renderLatest();
  const after = channels().join() + "|" + (view.channel ? metricsOf(view.channel).join() : "");
  if (before !== after) {
    chooseDefaults();
    renderSelectors();
  }
  appendLive(update);
}

async function loadDevice() {
  view.device = await apiGet(`/api/v1/devices/${encodeURIComponent(deviceId)}`);
  renderFacts();
  renderLatest();
}

function renderAll() {
  renderFacts();
  renderLatest();
  renderSelectors();
  buildChart();
}

async function main() {
  await initPage({ active: null, titleKey: "device.history" });
  document.getElementById("device-name").textContent = deviceId;
  document.title = `${deviceId} · ${t("app.title")}`;
  try {
    await loadDevice();
  } catch (error) {
    if (error.status === 404 || error.status === 400 || error.status === 403) {
      document.getElementById("device-content").hidden = true;
      fill(document.getElementById("device-error"), h("p", { class: "alert", role: "alert" }, error.message));
      return;
    }
    throw error;
  }
  await loadSeries();
  mountForecastPanel(document.getElementById("forecast-card"), `/api/v1/devices/${encodeURIComponent(deviceId)}/forecast`);

  document.getElementById("channel-select").addEventListener("change", (event) => {
    view.channel = event.target.value;
    view.metric = null;
    loadSeries().catch(showFatal);
  });
  document.getElementById("metric-select").addEventListener("change", (event) => {
    view.metric = event.target.value;
    loadSeries().catch(showFatal);
  });
  for (const button of document.querySelectorAll("[data-range]")) {
    button.addEventListener("click", () => {
      view.range = button.dataset.range;
      loadSeries().catch(showFatal);
    });
  }
  onLangChange(() => {
    document.title = `${deviceId} · ${t("app.title")}`;
    renderAll();
  });
  new ResizeObserver(() => view.chart && view.chart.setSize(chartSize())).observe(document.getElementById("chart-card"));
  setInterval(() => view.device && (renderFacts(), renderLatest()), 5000);
  connectLive({
    device: deviceId,
    onUpdate: applyUpdate,
    onLagged: () => Promise.all([loadDevice(), loadSeries()]).catch(showFatal),
  });
}

main().catch(showFatal);
