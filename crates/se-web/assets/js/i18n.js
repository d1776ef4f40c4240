// UI strings: fetched from /api/v1/i18n/{lang}, applied to elements that carry
// data-i18n (text), data-i18n-placeholder or data-i18n-aria-label attributes.

const STORAGE_KEY = "se-lang";
export const LANGUAGES = ["en", "fr"];

let strings = {};
let lang = "en";
const listeners = [];

/** Returns the language remembered in localStorage, else the browser's. */
export function preferredLang() {
  let stored = null;
  try {
    stored = localStorage.getItem(STORAGE_KEY);
  } catch (_) {
    // Storage may be disabled, so the browser language decides.
  }
  if (LANGUAGES.includes(stored)) return stored;
  const browser = (navigator.language || "en").toLowerCase();
  return browser.startsWith("fr") ? "fr" : "en";
}

export function currentLang() {
  return lang;
}

/** Translates a key and fills its {name} placeholders. A missing key returns itself. */
export function t(key, args = {}) {
  let text = Object.prototype.hasOwnProperty.call(strings, key) ? strings[key] : key;
  for (const [name, value] of Object.entries(args)) {
    text = text.split(`{${name}}`).join(String(value));
  }
  return text;
}

/** Label of a metric key such as power_w, in the current language. */
export function metricLabel(metricKey) {
  const key = `metric.${metricKey}`;
  return Object.prototype.hasOwnProperty.call(strings, key) ? strings[key] : metricKey;
}

/** Name stored for the site `default` until an admin renames it. */
const STORED_DEFAULT_SITE_NAME = "Default site";

/**
 * Display name of a site. The site of unassigned devices is created with an
 * English name, so that name is shown in the current language until an
 * admin renames the site.
 */
export function siteName(site) {
  return site.id === "default" && site.name === STORED_DEFAULT_SITE_NAME ? t("site.default_name") : site.name;
}

export function applyStrings(root = document) {
  for (const element of root.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  for (const element of root.querySelectorAll("[data-i18n-placeholder]")) {
    element.setAttribute("placeholder", t(element.dataset.i18nPlaceholder));
  }
  for (const element of root.querySelectorAll("[data-i18n-aria-label]")) {
    element.setAttribute("aria-label", t(element.dataset.i18nAriaLabel));
  }
}

/** Runs `callback` after every language change, to re-render dynamic content. */
export function onLangChange(callback) {
  listeners.push(callback);
}

/** Loads and applies a language, remembers it, and notifies listeners. */
export async function setLang(next) {
  const requested = LANGUAGES.includes(next) ? next : "en";
  const response = await fetch(`/api/v1/i18n/${requested}`, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`failed to load the ${requested} strings: HTTP ${response.status}`);
  strings = await response.json();
  lang = requested;
  try {
    localStorage.setItem(STORAGE_KEY, requested);
  } catch (_) {
    // Storage may be disabled. The page still switches, but the choice is not remembered.
  }
  document.documentElement.lang = requested;
  applyStrings();
  for (const listener of listeners) listener(requested);
}
