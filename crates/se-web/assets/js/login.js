// Login page. After a login with a server-generated password, the
// change-password form replaces the login form before anything else.

import { apiPost } from "./api.js";
import { h, fill } from "./dom.js";
import { initPage, showFatal } from "./layout.js";
import { setupPasswordForm } from "./password-form.js";

async function main() {
  await initPage({ withNav: false, titleKey: "login.title" });
  const form = document.getElementById("login-form");
  const message = document.getElementById("login-message");
  form.elements.username.focus();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const username = form.elements.username.value.trim();
    const password = form.elements.password.value;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const result = await apiPost("/api/v1/auth/login", { username, password });
      if (result.user.must_change_password) {
        document.getElementById("login-section").hidden = true;
        document.getElementById("password-section").hidden = false;
        setupPasswordForm({ knownCurrent: password, onDone: () => location.assign("/") });
        document.getElementById("new-password").focus();
      } else {
        location.assign("/");
      }
    } catch (error) {
      fill(message, h("p", { class: "alert", role: "alert" }, error.message));
      form.elements.password.value = "";
      form.elements.password.focus();
    } finally {
      button.disabled = false;
    }
  });
}

main().catch(showFatal);
