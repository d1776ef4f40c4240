// Admin page of accounts: the list with each owner's sites, creating an
// account, changing an owner's sites, resetting a password and deleting an
// account. Generated passwords are shown once, in the page's message.

import { apiDelete, apiGet, apiPost, apiPut } from "./api.js";
import { h, fill } from "./dom.js";
import { onLangChange, siteName, t } from "./i18n.js";
import { initPage, showFatal } from "./layout.js";

let accounts = [];
let sites = [];
let me = null;

function showMessage(ok, text) {
  const box = document.getElementById("accounts-message");
  box.className = ok ? "notice" : "alert";
  box.setAttribute("role", ok ? "status" : "alert");
  box.textContent = text;
  box.hidden = false;
}

// One checkbox per site, checked for the ids in `owned`.
function siteChoices(owned, name) {
  return sites.map((site) => h("label", { class: "choice" },
    h("input", { type: "checkbox", name, value: site.id, checked: owned.includes(site.id) ? true : null }),
    " ", siteName(site)));
}

function checkedSites(container) {
  return [...container.querySelectorAll("input[type=checkbox]:checked")].map((input) => input.value);
}

function accountRow(account) {
  const name = encodeURIComponent(account.username);
  const isOwner = account.role === "building_owner";
  const choices = h("span", { "data-field": "sites" }, isOwner ? siteChoices(account.sites, `sites-${account.id}`) : t("accounts.all_sites"));
  const act = async (work) => {
    try {
      await work();
    } catch (error) {
      showMessage(false, error.message);
    }
  };
  const saveSites = () => act(async () => {
    await apiPut(`/api/v1/users/${name}/sites`, { sites: checkedSites(choices) });
    await load();
    showMessage(true, t("accounts.sites_saved", { user: account.username }));
  });
  const reset = () => act(async () => {
    const answer = await apiPost(`/api/v1/users/${name}/password`, {});
    showMessage(true, t("accounts.password_reset", { user: account.username, password: answer.generated_password }));
  });
  const remove = () => act(async () => {
    if (!window.confirm(t("accounts.confirm_delete", { user: account.username }))) return;
    await apiDelete(`/api/v1/users/${name}`);
    await load();
    showMessage(true, t("accounts.deleted", { user: account.username }));
  });
  const self = me && me.username === account.username;
  return h("tr", { "data-account": account.username },
    h("td", {}, account.username),
    h("td", {}, t(`accounts.role_${account.role}`)),
    h("td", {}, choices),
    h("td", {},
      isOwner ? h("button", { type: "button", "data-action": "save-sites", onclick: saveSites }, t("accounts.save_sites")) : null,
      " ",
      h("button", { type: "button", "data-action": "reset-password", onclick: reset }, t("accounts.reset_password")),
      " ",
      self ? null : h("button", { type: "button", "data-action": "delete", onclick: remove }, t("accounts.delete"))));
}

function render() {
  fill(document.getElementById("accounts"), accounts.map(accountRow));
  const form = document.getElementById("new-account");
  const legend = h("legend", {}, t("accounts.sites"));
  fill(document.getElementById("new-account-sites"), legend, ...siteChoices([], "new-sites"));
  form.elements.role.onchange = () => {
    document.getElementById("new-account-sites").hidden = form.elements.role.value === "admin";
  };
}

async function load() {
  accounts = await apiGet("/api/v1/users");
  sites = await apiGet("/api/v1/sites");
  render();
}

async function createAccount(event) {
  event.preventDefault();
  const form = event.target;
  const role = form.elements.role.value;
  const body = {
    username: form.elements.username.value.trim(),
    role,
    sites: role === "admin" ? [] : checkedSites(document.getElementById("new-account-sites")),
  };
  try {
    const created = await apiPost("/api/v1/users", body);
    form.reset();
    await load();
    showMessage(true, t("accounts.created", { user: created.username, password: created.generated_password }));
  } catch (error) {
    showMessage(false, error.message);
  }
}

async function main() {
  me = await initPage({ active: "admin-accounts", titleKey: "accounts.title" });
  document.getElementById("new-account").addEventListener("submit", createAccount);
  await load();
  onLangChange(render);
}

main().catch(showFatal);
