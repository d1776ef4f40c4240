// The change-password form, shared by the login page (after a login with a
// generated password) and the password page.

import { apiPost } from "./api.js";
import { h, fill } from "./dom.js";
import { t } from "./i18n.js";

/**
 * Wires the form with id `password-form`. When `knownCurrent` is given, the
 * current-password field is hidden and that value is sent instead.
 */
export function setupPasswordForm({ knownCurrent = null, onDone }) {
  const form = document.getElementById("password-form");
  const message = document.getElementById("password-message");
  const currentField = document.getElementById("current-password-field");
  if (knownCurrent !== null) currentField.hidden = true;

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const current = knownCurrent ?? form.elements.current_password.value;
    const next = form.elements.new_password.value;
    const confirm = form.elements.confirm_password.value;
    if (next !== confirm) {
      fill(message, h("p", { class: "alert", role: "alert" }, t("password.mismatch")));
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await apiPost("/api/v1/auth/password", { current_password: current, new_password: next });
      fill(message, h("p", { class: "notice", role: "status" }, t("password.changed")));
      form.reset();
      if (onDone) onDone();
    } catch (error) {
      fill(message, h("p", { class: "alert", role: "alert" }, error.message));
    } finally {
      button.disabled = false;
    }
  });
}
