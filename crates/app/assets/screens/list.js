// The conversation list (APP.md §5): group invitations on top, then contacts and groups by
// their last activity, each with its unread count, last message and time; contacts still
// waiting for their invitation's answer show when the link expires.

import * as api from "../api.js";
import { t, tParts, when, fullTime } from "../i18n.js";
import { html, Title, Name, refusal, announce } from "../ui.js";
import { fileSummary } from "./files.js";

export function List({ threads, invitations, current, open, heading, refresh, newContact, accept, newGroup, answer }) {
  const Heading = heading ? Title : Subtitle;
  const sorted = threads ? [...threads].sort((a, b) => b.activity_ms - a.activity_ms) : null;
  return html`
    <${Heading} id="list-title">${t("conversations")}<//>
    <div class="actions list-actions">
      <button onClick=${newContact}>${t("new_contact")}</button>
      <button onClick=${accept}>${t("accept_invitation")}</button>
      <button onClick=${newGroup}>${t("new_group")}</button>
    </div>
    ${invitations.length > 0 && html`<section aria-labelledby="invitations-title">
      <h3 id="invitations-title" class="visually-hidden">${t("group_invitations")}</h3>
      <ul class="invitations">${invitations.map((i) => html`<${GroupInvitation} key=${i.id} inv=${i} refresh=${refresh} answer=${answer} />`)}</ul>
    </section>`}
    ${sorted === null
      ? html`<p class="hint">${t("loading")}</p>`
      : sorted.length === 0
        ? html`<p class="hint">${t("no_conversations")}</p>`
        : html`<ul class="threads">${sorted.map((x) => html`<li key=${x.name}>
            <${Item} thread=${x} current=${x.name === current} open=${open} /></li>`)}</ul>`}`;
}

/** The list's heading when a conversation beside it holds the screen's h1. */
function Subtitle({ id, children }) {
  return html`<h2 id=${id}>${children}</h2>`;
}

function summary(x) {
  if (x.state === "inviting") {
    return x.expires_at_ms ? t("waiting_until", { time: when(x.expires_at_ms) }) : t("waiting");
  }
  if (x.state === "joining") return t("joining");
  if (x.state === "left") return t("left");
  if (!x.last) return x.group ? t("group_no_messages", { count: x.members.length }) : t("no_messages");
  return null;
}

function Item({ thread: x, current, open }) {
  const note = summary(x);
  const last = x.last;
  return html`<button class=${`thread${x.unread ? " unread" : ""}`} aria-current=${current ? "true" : null}
      onClick=${() => open(x.name)}>
    <span class="thread-top">
      <${Name} of=${x.name} />
      ${x.group && html`<span class="tag">${t("group")}</span>`}
      ${x.activity_ms > 0 && html`<time class="time" datetime=${new Date(x.activity_ms).toISOString()} title=${fullTime(x.activity_ms)}>${when(x.activity_ms)}</time>`}
    </span>
    <span class="thread-bottom">
      ${note !== null
        ? html`<span class=${`preview state-${x.state}`}>${note}</span>`
        : html`<span class="preview">${last.sender === "me" ? html`<span class="you">${t("you_prefix")}</span>` : x.group ? tParts("sender_prefix", { name: html`<${Name} of=${last.sender} />` }) : ""}<bdi>${last.file ? fileSummary(last.file) : last.text}</bdi></span>`}
      ${x.unread > 0 && html`<span class="badge"><span aria-hidden="true">${x.unread}</span><span class="visually-hidden">${t("unread", { count: x.unread })}</span></span>`}
    </span>
  </button>`;
}

/** A group invitation waiting for consent: "Answer" opens its screen (the name can be changed there). */
function GroupInvitation({ inv, refresh, answer }) {
  const decline = async () => {
    const a = await api.call({ cmd: "group_decline", invitation: inv.id }).catch(() => null);
    announce(!a || a.kind === "error" ? refusal(a) : t("announce_declined"));
    refresh();
  };
  return html`<li class="invitation">
    <p>${tParts("group_invitation", { name: html`<${Name} of=${inv.from} />`, group: html`<${Name} of=${inv.group} />` })}</p>
    <div class="actions">
      <button class="primary" onClick=${() => answer(inv.id)}>${t("answer_invitation")}</button>
      <button onClick=${decline}>${t("decline")}</button>
    </div>
  </li>`;
}
