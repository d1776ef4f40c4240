// Password page: change the password; forced after a server-generated one.

import { initPage, showFatal } from "./layout.js";
import { setupPasswordForm } from "./password-form.js";

async function main() {
  const user = await initPage({ active: "password", titleKey: "password.title" });
  document.getElementById("forced-notice").hidden = !user.must_change_password;
  setupPasswordForm({ onDone: () => user.must_change_password && location.assign("/") });
}

main().catch(showFatal);
