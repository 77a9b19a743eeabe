// Making a group, and answering an invitation into one (APP.md §5): nobody is put in a group
// without saying yes here first; the name the inviter suggested can be changed (only you see it).

import { useState } from "../vendor/htm-preact.js";
import * as api from "../api.js";
import { t, tParts, fullTime } from "../i18n.js";
import { html, Title, Name, Problem, refusal, announce } from "../ui.js";

function BackButton({ back }) {
  return html`<button class="back" onClick=${back}><span class="flip" aria-hidden="true">←</span><span class="visually-hidden">${t("back_to_list")}</span></button>`;
}

/** A new group: its name; then its details screen, to add contacts. */
export function NewGroup({ back, made, refresh }) {
  const [problem, setProblem] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    const name = e.currentTarget.elements.name.value.trim();
    if (!name) return setProblem(t("error_invalid_name"));
    setBusy(true);
    const a = await api.call({ cmd: "group_create", name }).catch(() => null);
    setBusy(false);
    if (!a || a.kind !== "ok") return setProblem(refusal(a));
    refresh();
    made(name);
  };
  return html`<section class="form-screen" aria-labelledby="group-new-title">
    <${BackButton} back=${back} />
    <${Title} id="group-new-title">${t("new_group")}<//>
    <form onSubmit=${submit}>
      <p>${t("new_group_text")}</p>
      <label for="name">${t("group_name")}</label>
      <input id="name" name="name" dir="auto" autocomplete="off" spellcheck="false" maxlength="64" aria-describedby="group-name-hint" />
      <p id="group-name-hint" class="hint">${t("group_name_hint")}</p>
      <${Problem} text=${problem} />
      <div class="actions"><button class="primary" type="submit" disabled=${busy}>${t("create_group")}</button></div>
    </form>
  </section>`;
}

/** An invitation into a group: who invites, the suggested name (editable), join or decline. */
export function GroupInvitation({ inv, back, open, refresh }) {
  const [problem, setProblem] = useState("");
  const [busy, setBusy] = useState(false);
  if (!inv) {
    return html`<section class="form-screen"><${BackButton} back=${back} />
      <${Title}>${t("group_invitation_title")}<//><p>${t("error_unknown_invitation")}</p></section>`;
  }
  const join = async (e) => {
    e.preventDefault();
    const name = e.currentTarget.elements.name.value.trim();
    if (!name) return setProblem(t("error_invalid_name"));
    setBusy(true);
    const a = await api.call({ cmd: "group_accept", invitation: inv.id, name }).catch(() => null);
    setBusy(false);
    if (!a || a.kind === "error") return setProblem(refusal(a));
    const joined = a.name || name;
    announce(t("announce_joining", { group: joined }));
    refresh();
    open(joined);
  };
  const decline = async () => {
    setBusy(true);
    const a = await api.call({ cmd: "group_decline", invitation: inv.id }).catch(() => null);
    setBusy(false);
    if (!a || a.kind === "error") return setProblem(refusal(a));
    announce(t("announce_declined"));
    refresh();
    back();
  };
  return html`<section class="form-screen" aria-labelledby="group-inv-title">
    <${BackButton} back=${back} />
    <${Title} id="group-inv-title">${t("group_invitation_title")}<//>
    <p>${tParts("group_invitation", { name: html`<${Name} of=${inv.from} />`, group: html`<${Name} of=${inv.group} />` })}</p>
    ${inv.at_ms > 0 && html`<p class="hint">${t("received_at", { time: fullTime(inv.at_ms) })}</p>`}
    <p>${t("group_invitation_text")}</p>
    <form onSubmit=${join}>
      <label for="group-name">${t("group_name")}</label>
      <input id="group-name" name="name" dir="auto" autocomplete="off" spellcheck="false" maxlength="64"
        value=${inv.group} aria-describedby="group-name-hint" />
      <p id="group-name-hint" class="hint">${t("group_name_hint")}</p>
      <${Problem} text=${problem} />
      <div class="actions">
        <button class="primary" type="submit" disabled=${busy}>${t("join")}</button>
        <button type="button" onClick=${decline} disabled=${busy}>${t("decline")}</button>
      </div>
      <p class="hint">${t("decline_hint")}</p>
    </form>
  </section>`;
}
