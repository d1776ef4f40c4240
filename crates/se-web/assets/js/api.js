// JSON API calls with the session cookie and the UI language. A 401 sends the
// browser to the login page, and a required password change to the password page.

import { currentLang, t } from "./i18n.js";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function request(method, path, body, rawText = false) {
  const headers = { "Accept": "application/json", "Accept-Language": currentLang() };
  if (body !== undefined) headers["Content-Type"] = rawText ? "text/plain" : "application/json";
  let response;
  let encoded;
  if (body !== undefined) {
    encoded = rawText ? body : JSON.stringify(body);
  }
  try {
    response = await fetch(path, { method, headers, credentials: "same-origin", body: encoded });
  } catch (_) {
    throw new ApiError(0, "network", t("common.network_error"));
  }
  if (response.status === 204) return null;
  let payload = null;
  try {
    payload = await response.json();
  } catch (_) {
    payload = null;
  }
  if (response.ok) return payload;

  const code = payload?.error?.code ?? "http_" + response.status;
  const message = payload?.error?.message ?? `HTTP ${response.status}`;
  const onLoginPage = location.pathname === "/login";
  if (response.status === 401 && code === "not_authenticated" && !onLoginPage) {
    location.assign("/login");
  } else if (code === "password_change_required" && location.pathname !== "/password") {
    location.assign("/password");
  }
  throw new ApiError(response.status, code, message);
}

export const apiGet = (path) => request("GET", path);
export const apiPost = (path, body) => request("POST", path, body ?? {});
export const apiPut = (path, body) => request("PUT", path, body ?? {});
// Sends `text` as the body unchanged, for bodies the server parses itself (tariff JSON).
export const apiPutText = (path, text) => request("PUT", path, text, true);
export const apiDelete = (path) => request("DELETE", path);
