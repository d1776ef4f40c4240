// Page frame: header with navigation, language switch, live indicator and
// logout; the live connection to /api/v1/live.

import { apiGet, apiPost } from "./api.js";
import { h, fill } from "./dom.js";
import { applyStrings, currentLang, LANGUAGES, onLangChange, preferredLang, setLang, t } from "./i18n.js";

const NAV = [
  { href: "/", key: "nav.dashboard", id: "dashboard" },
  { href: "/ingest-errors", key: "nav.ingest_errors", id: "ingest-errors" },
  { href: "/password", key: "nav.password", id: "password" },
];

function languageSwitch() {
  const buttons = LANGUAGES.map((code) =>
    h("button", {
      type: "button",
      class: "lang-button",
      "data-lang": code,
      "aria-pressed": String(code === currentLang()),
      lang: code,
      onclick: () => setLang(code).catch(showFatal),
    }, code.toUpperCase()),
  );
  onLangChange((code) => {
    for (const button of buttons) button.setAttribute("aria-pressed", String(button.dataset.lang === code));
  });
  return h("div", { class: "lang-switch", role: "group", "data-i18n-aria-label": "nav.language" }, buttons);
}

function renderHeader(active, withNav) {
  const header = document.getElementById("app-header");
  if (!header) return;
  const brand = h("a", { class: "brand", href: "/" }, h("span", { class: "brand-mark", "aria-hidden": "true" }), h("span", { "data-i18n": "app.title" }));
  const tools = h("div", { class: "header-tools" });
  if (withNav) {
    tools.append(h("span", { id: "live-indicator", class: "live-indicator", hidden: true, "data-state": "connecting", role: "status" },
      h("span", { class: "live-dot", "aria-hidden": "true" }),
      h("span", { class: "live-text", "data-i18n": "live.connecting" })));
  }
  tools.append(languageSwitch());
  if (withNav) {
    tools.append(h("button", { type: "button", id: "logout", class: "button-quiet", "data-i18n": "nav.logout", onclick: logout }));
  }
  const children = [h("div", { class: "header-row" }, brand, tools)];
  if (withNav) {
    children.push(h("nav", { class: "main-nav" },
      NAV.map((item) => h("a", { href: item.href, "data-i18n": item.key, "aria-current": item.id === active ? "page" : null }))));
  }
  fill(header, children);
}

async function logout() {
  try {
    await apiPost("/api/v1/auth/logout");
  } finally {
    location.assign("/login");
  }
}

/** Shows an error that stops the page from working, in place of its content. */
export function showFatal(error) {
  const main = document.querySelector("main");
  const message = error?.message ?? String(error);
  const box = h("p", { class: "alert", role: "alert" }, t("common.error", { message }));
  if (main) main.prepend(box);
  document.body.classList.remove("loading");
}

/**
 * Prepares a page: loads the strings, draws the header and applies the
 * strings. Pages with `withNav` also check the session.
 * Returns the signed-in user, or null on pages without navigation.
 */
export async function initPage({ active = null, titleKey = null, withNav = true } = {}) {
  await setLang(preferredLang());
  renderHeader(active, withNav);
  applyStrings();
  const updateTitle = () => {
    document.title = titleKey ? `${t(titleKey)} · ${t("app.title")}` : t("app.title");
  };
  updateTitle();
  onLangChange(updateTitle);
  let user = null;
  if (withNav) {
    const me = await apiGet("/api/v1/auth/me");
    user = me.user;
    const nav = document.querySelector(".main-nav");
    if (nav && user?.role === "admin") {
      nav.append(h("a", { href: "/admin/sites", id: "nav-admin-sites", "data-i18n": "nav.admin_sites",
        "aria-current": active === "admin-sites" ? "page" : null }, t("nav.admin_sites")));
      nav.append(h("a", { href: "/admin/accounts", id: "nav-admin-accounts", "data-i18n": "nav.admin_accounts",
        "aria-current": active === "admin-accounts" ? "page" : null }, t("nav.admin_accounts")));
    }
  }
  document.body.classList.remove("loading");
  return user;
}

function setLiveState(state) {
  const indicator = document.getElementById("live-indicator");
  if (!indicator) return;
  indicator.hidden = false;
  indicator.dataset.state = state;
  const text = indicator.querySelector(".live-text");
  text.dataset.i18n = `live.${state}`;
  text.textContent = t(`live.${state}`);
}

/**
 * Subscribes to live updates. `onUpdate` receives each LiveUpdate; `onLagged`
 * runs when the server skipped updates, so the page should reload its data.
 * The browser reconnects by itself after a network drop; after a refused
 * stream (such as an expired session) this retries every 5 s.
 */
export function connectLive({ device = null, onUpdate, onLagged }) {
  const url = device ? `/api/v1/live?device=${encodeURIComponent(device)}` : "/api/v1/live";
  setLiveState("connecting");
  const source = new EventSource(url);
  source.addEventListener("open", () => setLiveState("connected"));
  source.addEventListener("ready", () => setLiveState("connected"));
  source.addEventListener("reading", (event) => {
    setLiveState("connected");
    try {
      onUpdate(JSON.parse(event.data));
    } catch (error) {
      console.error("failed to apply a live update", error);
    }
  });
  source.addEventListener("lagged", () => onLagged && onLagged());
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      setLiveState("disconnected");
      // A refused stream often means an expired session, and this call then redirects to the login page.
      apiGet("/api/v1/auth/me").catch(() => {});
      setTimeout(() => connectLive({ device, onUpdate, onLagged }), 5000);
    } else {
      setLiveState("disconnected");
    }
  });
  return source;
}
