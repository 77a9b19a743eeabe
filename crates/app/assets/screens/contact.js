// A contact's or a group's details (APP.md §4, §5): its state, the safety code (12 groups of
// 5 digits, 3 rows of 4, always Latin digits left to right, as `qanat verify` prints it), the
// mark "verified" and "the safety code changed"; a group's members (each with its own code),
// adding a contact, removing a member, leaving.

import { useState, useEffect } from "../vendor/htm-preact.js";
import * as api from "../api.js";
import { t, tParts } from "../i18n.js";
import { html, Title, Name, Problem, refusal, announce } from "../ui.js";
import { LinkCard } from "./invite.js";

/** `code`'s digits as rows of groups: 60 digits give 3 rows of 4 groups of 5. */
export function codeRows(code) {
  const groups = (code || "").replace(/\s+/g, "").match(/.{1,5}/g) || [];
  const rows = [];
  for (let i = 0; i < groups.length; i += 4) rows.push(groups.slice(i, i + 4));
  return rows;
}

/** The safety code of `name` with `member` (a group's), its mark, and the button to change it. */
export function SafetyCode({ name, member, whose, changed: onChanged }) {
  const [sc, setSc] = useState(null);
  const [problem, setProblem] = useState("");
  const [busy, setBusy] = useState(false);

  const load = async () => {
    const cmd = { cmd: "safety_code", name };
    if (member) cmd.member = member;
    const a = await api.call(cmd, { activity: false }).catch(() => null);
    if (a && a.kind === "safety_code") {
      setSc(a);
      setProblem("");
    } else setProblem(refusal(a));
  };
  useEffect(() => {
    load();
  }, [name, member]);

  const mark = async () => {
    setBusy(true);
    const cmd = { cmd: "set_verified", name, code: sc.code, verified: !sc.verified };
    if (member) cmd.member = member;
    const a = await api.call(cmd).catch(() => null);
    setBusy(false);
    if (!a || a.kind !== "ok") return setProblem(refusal(a));
    announce(sc.verified ? t("unmarked_verified") : t("marked_verified"));
    await load();
    if (onChanged) onChanged();
  };

  if (!sc) return html`<${Problem} text=${problem} />`;
  const id = `code-${member || "contact"}`;
  return html`<div class="safety">
    <p id=${`${id}-label`}>${tParts("safety_code_of", { name: html`<${Name} of=${whose} />` })}</p>
    <div class="code" dir="ltr" translate="no" role="group" aria-labelledby=${`${id}-label`}>
      ${codeRows(sc.code).map((row, i) => html`<p class="code-row" key=${i}>${row.map((g, j) => html`<span key=${j}>${g}</span>`)}</p>`)}
    </div>
    ${sc.verified
      ? html`<p class="verified"><span aria-hidden="true">✓ </span>${t("verified_text")}</p>`
      : sc.changed
        ? html`<p class="warning" role="alert">${tParts("safety_changed", { name: html`<${Name} of=${whose} />` })}</p>`
        : html`<p class="hint">${tParts("verify_how", { name: html`<${Name} of=${whose} />` })}</p>`}
    <div class="actions">
      <button class=${sc.verified ? "" : "primary"} onClick=${mark} disabled=${busy}>
        ${sc.verified ? t("unmark_verified") : t("mark_verified")}</button>
    </div>
    <${Problem} text=${problem} />
  </div>`;
}

function BackButton({ back }) {
  return html`<button class="back" onClick=${back}><span class="flip" aria-hidden="true">←</span><span class="visually-hidden">${t("back_to_conversation")}</span></button>`;
}

const STATE = { inviting: "state_inviting", joining: "state_joining", active: "state_active", left: "state_left" };

/** A contact: its state, and once the conversation is set up, the safety code. */
export function Contact({ name, thread, back, refresh }) {
  const state = thread ? thread.state : "active";
  const [inv, setInv] = useState(null);
  useEffect(() => {
    if (state === "inviting") {
      api.call({ cmd: "invitation", name }, { activity: false }).then((a) => a.kind === "invitation" && setInv(a), () => {});
    }
  }, [name, state]);
  return html`<section class="form-screen" aria-labelledby="contact-title">
    <${BackButton} back=${back} />
    <${Title} id="contact-title"><${Name} of=${name} /><//>
    <p class="hint">${t("contact")}</p>
    <p><span class=${`state state-${state}`}>${t(STATE[state] || "state_active")}</span></p>
    ${state === "inviting" && html`<p>${tParts("waiting_text", { name: html`<${Name} of=${name} />` })}</p>
      ${inv && html`<${LinkCard} inv=${inv} />`}`}
    ${state === "joining" && html`<p>${tParts("joining_text", { name: html`<${Name} of=${name} />` })}</p>`}
    ${state === "active" && html`<h2>${t("safety_code")}</h2>
      <p>${t("safety_code_text")}</p>
      <${SafetyCode} name=${name} whose=${name} changed=${refresh} />`}
    ${state === "left" && html`<p>${t("contact_left_text")}</p>`}
  </section>`;
}

/** A group: its members (each with a safety code, and removable), add a contact, leave. */
export function Group({ name, thread, threads, back, refresh, left }) {
  const [members, setMembers] = useState(null);
  const [invited, setInvited] = useState([]); // asked, not joined (maybe never: a no is not told)
  const [problem, setProblem] = useState("");
  const [showCode, setShowCode] = useState(null); // the member whose code is shown
  const [removing, setRemoving] = useState(null); // the member about to be removed
  const [leaving, setLeaving] = useState(false);
  const [busy, setBusy] = useState(false);
  const state = thread ? thread.state : "active";

  const load = async () => {
    const a = await api.call({ cmd: "members", name }, { activity: false }).catch(() => null);
    if (a && a.kind === "members") {
      setMembers(a.list);
      setInvited(a.invited || []);
    } else setProblem(refusal(a));
  };
  useEffect(() => {
    load();
  }, [name, thread && thread.members.join("\n")]);

  const act = async (cmd, done) => {
    setBusy(true);
    const a = await api.call(cmd).catch(() => null);
    setBusy(false);
    if (!a || a.kind === "error") {
      setProblem(refusal(a));
      return false;
    }
    setProblem("");
    if (done) done(a);
    refresh();
    await load();
    return true;
  };

  const add = async (e) => {
    e.preventDefault();
    const contact = e.currentTarget.elements.contact.value;
    if (!contact) return;
    if (await act({ cmd: "group_add", group: name, contact })) announce(t("announce_added", { name: contact, group: name }));
  };
  const remove = async (member) => {
    if (await act({ cmd: "group_remove", group: name, member })) {
      announce(t("announce_removed", { name: member, group: name }));
      setRemoving(null);
    }
  };
  const leave = async () => {
    if (await act({ cmd: "group_leave", group: name })) {
      announce(t("announce_left", { group: name }));
      setLeaving(false);
      left();
    }
  };

  // Contacts that could join: set up, not in the group yet.
  const candidates = (threads || []).filter(
    (x) => !x.group && x.state === "active" && !(members || []).includes(x.name),
  );
  const active = state === "active";
  return html`<section class="form-screen" aria-labelledby="group-title">
    <${BackButton} back=${back} />
    <${Title} id="group-title"><${Name} of=${name} /><//>
    <p class="hint">${t("group_details")}</p>
    <p><span class=${`state state-${state}`}>${t(STATE[state] || "state_active")}</span></p>
    ${state === "left" && html`<p>${t("left_text")}</p>`}
    <h2 id="members-title">${t("members_title")}</h2>
    ${members === null
      ? html`<p class="hint">${t("loading")}</p>`
      : members.length === 0
        ? html`<p class="hint">${t("no_members")}</p>`
        : html`<ul class="members" aria-labelledby="members-title">${members.map((m) => html`<li key=${m}>
            <div class="member-row">
              <${Name} of=${m} />
              ${active && html`<span class="member-actions">
                <button aria-expanded=${showCode === m ? "true" : "false"} onClick=${() => setShowCode(showCode === m ? null : m)}>
                  ${tParts("show_code_of", { name: html`<${Name} of=${m} />` })}</button>
                <button onClick=${() => setRemoving(m)} disabled=${busy}>${tParts("remove_member", { name: html`<${Name} of=${m} />` })}</button>
              </span>`}
            </div>
            ${removing === m && html`<div class="confirm" role="group" aria-label=${t("confirm")}>
              <p>${tParts("remove_confirm", { name: html`<${Name} of=${m} />`, group: html`<${Name} of=${name} />` })}</p>
              <div class="actions">
                <button class="danger" onClick=${() => remove(m)} disabled=${busy}>${t("remove")}</button>
                <button onClick=${() => setRemoving(null)}>${t("cancel")}</button>
              </div></div>`}
            ${showCode === m && html`<${SafetyCode} name=${name} member=${m} whose=${m} />`}
          </li>`)}</ul>`}
    ${invited.length > 0 && html`<h3 id="invited-title">${t("invited_title")}</h3>
      <ul class="invited" aria-labelledby="invited-title" aria-describedby="invited-hint">${invited.map((n) => html`<li key=${n}><${Name} of=${n} /></li>`)}</ul>
      <p id="invited-hint" class="hint">${t("invited_hint")}</p>`}
    ${active && html`<h2>${t("add_member")}</h2>
      ${candidates.length === 0
        ? html`<p class="hint">${t("no_candidates")}</p>`
        : html`<form class="inline-form" onSubmit=${add}>
            <label for="contact">${t("contact_to_add")}</label>
            <div class="row">
              <select id="contact" name="contact">${candidates.map((x) => html`<option value=${x.name}>${x.name}</option>`)}</select>
              <button class="primary" type="submit" disabled=${busy}>${t("add")}</button>
            </div>
            <p class="hint">${t("add_member_hint")}</p>
          </form>`}
      <h2>${t("leave_group")}</h2>
      ${leaving
        ? html`<div class="confirm"><p>${tParts("leave_confirm", { group: html`<${Name} of=${name} />` })}</p>
            <div class="actions">
              <button class="danger" onClick=${leave} disabled=${busy}>${t("leave")}</button>
              <button onClick=${() => setLeaving(false)}>${t("cancel")}</button>
            </div></div>`
        : html`<div class="actions"><button onClick=${() => setLeaving(true)}>${t("leave_group")}</button></div>`}`}
    <${Problem} text=${problem} />
  </section>`;
}
