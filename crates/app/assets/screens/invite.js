// A new contact (APP.md §5): a name, then the invitation link as a QR code and as text with a
// copy button, and its expiry. The contact waits in the list until the link is used.

import { useState } from "../vendor/htm-preact.js";
import * as api from "../api.js";
import { t, tParts, when, fullTime } from "../i18n.js";
import { html, Title, Name, Problem, refusal } from "../ui.js";

/** The quiet zone around a QR code, in modules (the standard's minimum). */
const MARGIN = 4;

/**
 * The app's `qr: {size, path}` (the dark modules as SVG path data, APP.md §4) drawn as an
 * image: no image endpoint, no data: URL, no markup from a string. Dark on light in every
 * colour scheme, as cameras expect.
 */
export function Qr({ qr }) {
  if (!qr || typeof qr !== "object" || !qr.size) return null;
  const side = qr.size + 2 * MARGIN;
  return html`<svg class="qr" role="img" aria-label=${t("qr_label")} viewBox=${`${-MARGIN} ${-MARGIN} ${side} ${side}`}
      shape-rendering="crispEdges">
    <rect class="qr-light" x=${-MARGIN} y=${-MARGIN} width=${side} height=${side} />
    <path class="qr-dark" d=${qr.path} />
  </svg>`;
}

export function LinkCard({ inv }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(inv.link);
      setCopied(true);
    } catch {
      setCopied(false);
    }
  };
  return html`<div class="link-card">
    <${Qr} qr=${inv.qr} />
    <p class="link" dir="ltr" translate="no"><code>${inv.link}</code></p>
    <div class="actions">
      <button class="primary" onClick=${copy}>${t("copy_link")}</button>
      <span role="status">${copied ? t("copied") : ""}</span>
    </div>
    ${inv.expires_at_ms > 0 && html`<p class="hint">${t("link_expires", { time: fullTime(inv.expires_at_ms) })}</p>`}
  </div>`;
}

export function Invite({ back, open, refresh }) {
  const [inv, setInv] = useState(null);
  const [name, setName] = useState("");
  const [problem, setProblem] = useState("");

  const submit = async (e) => {
    e.preventDefault();
    const n = e.currentTarget.elements.name.value.trim();
    if (!n) return setProblem(t("error_invalid_name"));
    const a = await api.call({ cmd: "invite", name: n }).catch(() => null);
    if (!a || a.kind !== "invitation") return setProblem(refusal(a));
    setProblem("");
    setName(n);
    setInv(a);
    refresh();
  };

  return html`<section class="form-screen" aria-labelledby="invite-title">
    <button class="back" onClick=${back}><span class="flip" aria-hidden="true">←</span><span class="visually-hidden">${t("back_to_list")}</span></button>
    <${Title} id="invite-title">${t("new_contact")}<//>
    ${inv === null
      ? html`<form onSubmit=${submit}>
          <p>${t("invite_text")}</p>
          <label for="name">${t("contact_name")}</label>
          <input id="name" name="name" dir="auto" autocomplete="off" spellcheck="false" maxlength="64" aria-describedby="name-hint" />
          <p id="name-hint" class="hint">${t("contact_name_hint")}</p>
          <${Problem} text=${problem} />
          <div class="actions"><button class="primary" type="submit">${t("make_invitation")}</button></div>
        </form>`
      : html`<div>
          <p>${tParts("invite_send", { name: html`<${Name} of=${name} />` })}</p>
          <${LinkCard} inv=${inv} />
          <p class="warning">${t("invite_warning")}</p>
          <div class="actions"><button onClick=${() => open(name)}>${t("open_conversation")}</button></div>
        </div>`}
  </section>`;
}
