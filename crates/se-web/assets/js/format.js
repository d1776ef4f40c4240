// Number, time and power formatting in the UI language.

import { currentLang, t } from "./i18n.js";

export function formatNumber(value, maxDigits = 1) {
  if (value === null || value === undefined || !Number.isFinite(value)) return t("common.none");
  return new Intl.NumberFormat(currentLang(), { maximumFractionDigits: maxDigits }).format(value);
}

/**
 * Formats an amount that the server sends as decimal text, such as "25.873",
 * with as many decimals as the text has: the currency's minor unit.
 */
export function formatMoney(text) {
  const decimals = (String(text).split(".")[1] ?? "").length;
  const value = Number(text);
  if (!Number.isFinite(value)) return t("common.none");
  return new Intl.NumberFormat(currentLang(), { minimumFractionDigits: decimals, maximumFractionDigits: decimals }).format(value);
}

/** Formats a value with its unit symbol. A dimensionless value gets no unit. */
export function formatValue(value, unit, maxDigits = 1) {
  const number = formatNumber(value, maxDigits);
  return unit ? `${number} ${unit}` : number;
}

export function formatTime(ms) {
  if (!ms) return t("common.never");
  return new Intl.DateTimeFormat(currentLang(), { dateStyle: "short", timeStyle: "medium" }).format(new Date(ms));
}

/** "12 seconds ago" style text for a past instant. */
export function formatAgo(ms, nowMs = Date.now()) {
  if (!ms) return t("common.never");
  // A device clock slightly ahead of the browser's would read "in 2 s", so this shows "now".
  const seconds = Math.min(0, Math.round((ms - nowMs) / 1000));
  const format = new Intl.RelativeTimeFormat(currentLang(), { numeric: "auto", style: "short" });
  const steps = [
    [60, "second", 1],
    [3600, "minute", 60],
    [86400, "hour", 3600],
    [Infinity, "day", 86400],
  ];
  for (const [limit, unit, size] of steps) {
    if (Math.abs(seconds) < limit) return format.format(Math.round(seconds / size), unit);
  }
  return formatTime(ms);
}

/** State name of a device from its `online` field: true, false or null. */
export function onlineState(online) {
  if (online === true) return "online";
  if (online === false) return "offline";
  return "unknown";
}

/**
 * Power of a device from its latest values: the sum of power_w over channels,
 * or, for a device that reports no active power, the sum of apparent_power_va.
 * Returns {value, unit} or null when the device reports neither.
 */
export function devicePower(latest) {
  for (const [metric, unit] of [["power_w", "W"], ["apparent_power_va", "VA"]]) {
    const values = latest.filter((entry) => entry.metric === metric).map((entry) => entry.value);
    if (values.length > 0) return { value: values.reduce((sum, value) => sum + value, 0), unit };
  }
  return null;
}

/**
 * Merges live values into a device's latest values in place: a value replaces
 * the one of the same channel and metric when it is not older.
 */
export function mergeLatest(latest, update) {
  for (const value of update.values) {
    const existing = latest.find((entry) => entry.channel === value.channel && entry.metric === value.metric);
    if (!existing) {
      latest.push({ channel: value.channel, metric: value.metric, unit: value.unit, ts_ms: update.ts_ms, value: value.value });
    } else if (existing.ts_ms <= update.ts_ms) {
      existing.value = value.value;
      existing.ts_ms = update.ts_ms;
    }
  }
}
