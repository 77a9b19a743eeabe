// The lock screen: the passphrase, sent once and forgotten (APP.md §2.3).

import { useState, useEffect, useRef } from "../vendor/htm-preact.js";
import * as api from "../api.js";
import { t } from "../i18n.js";
import { html, Title, Problem, refusal } from "../ui.js";

export function Unlock({ done }) {
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState("");
  const field = useRef(null);
  // The passphrase is all this screen asks: its field has the focus (after the h1 took it, so
  // the screen's title is still what a screen reader's heading list starts from).
  useEffect(() => {
    if (field.current) field.current.focus();
  }, []);

  const submit = async (e) => {
    e.preventDefault();
    const field = e.currentTarget.elements.passphrase;
    const passphrase = field.value;
    field.value = ""; // emptied once read: the page keeps no copy
    if (!passphrase) return;
    setBusy(true);
    setProblem("");
    try {
      const a = await api.call({ cmd: "unlock", passphrase });
      if (a.kind === "unlocked" && a.key) {
        api.setKey(a.key);
        done();
        return;
      }
      setProblem(refusal(a));
    } catch {
      setProblem(t("error_offline"));
    }
    setBusy(false);
    setTimeout(() => field.focus(), 0);
  };

  return html`<main class="narrow unlock">
    <${Title}>${t("unlock_title")}<//>
    <form onSubmit=${submit} novalidate>
      <label for="passphrase">${t("passphrase")}</label>
      <input id="passphrase" ref=${field} name="passphrase" type="password" autocomplete="off" spellcheck="false"
        autocapitalize="off" required disabled=${busy} aria-describedby="unlock-problem" />
      <div id="unlock-problem"><${Problem} text=${problem} /></div>
      <button class="primary" type="submit" disabled=${busy}>${busy ? t("unlocking") : t("unlock")}</button>
    </form>
  </main>`;
}
