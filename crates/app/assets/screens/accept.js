// Accepting an invitation (APP.md §5): paste the link someone sent, give them a name.

import { useState } from "../vendor/htm-preact.js";
import * as api from "../api.js";
import { t } from "../i18n.js";
import { html, Title, Problem, refusal } from "../ui.js";

export function Accept({ back, open, refresh }) {
  const [problem, setProblem] = useState("");
  const [busy, setBusy] = useState(false);

  const submit = async (e) => {
    e.preventDefault();
    const f = e.currentTarget.elements;
    const link = f.link.value.trim();
    const name = f.name.value.trim();
    if (!link) return setProblem(t("error_invitation_invalid"));
    if (!name) return setProblem(t("error_invalid_name"));
    setBusy(true);
    const a = await api.call({ cmd: "accept", link, name }).catch(() => null);
    setBusy(false);
    if (!a || a.kind !== "ok") return setProblem(refusal(a));
    refresh();
    open(name);
  };

  return html`<section class="form-screen" aria-labelledby="accept-title">
    <button class="back" onClick=${back}><span class="flip" aria-hidden="true">←</span><span class="visually-hidden">${t("back_to_list")}</span></button>
    <${Title} id="accept-title">${t("accept_invitation")}<//>
    <form onSubmit=${submit}>
      <p>${t("accept_text")}</p>
      <label for="link">${t("invitation_link")}</label>
      <textarea id="link" name="link" rows="3" dir="ltr" autocomplete="off" spellcheck="false"></textarea>
      <label for="name">${t("contact_name")}</label>
      <input id="name" name="name" dir="auto" autocomplete="off" spellcheck="false" maxlength="64" aria-describedby="name-hint" />
      <p id="name-hint" class="hint">${t("contact_name_hint")}</p>
      <${Problem} text=${problem} />
      <div class="actions"><button class="primary" type="submit" disabled=${busy}>${t("accept")}</button></div>
    </form>
  </section>`;
}
