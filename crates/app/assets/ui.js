// Pieces every screen uses. Everything a contact or the network chose (names, messages, links)
// is rendered as text (htm/Preact text nodes), isolated in <bdi> or dir="auto", never parsed
// as markup and never turned into links.

import { html, useEffect, useRef } from "./vendor/htm-preact.js";
import { t } from "./i18n.js";

export { html };

/**
 * The screen's one h1, focused when the screen appears (screen readers hear where they are);
 * only then: a re-render (a message arriving) must not take the focus from the composer.
 */
export function Title({ children, id }) {
  const ref = useRef(null);
  useEffect(() => {
    if (ref.current) ref.current.focus();
  }, []);
  return html`<h1 id=${id} tabindex="-1" ref=${ref}>${children}</h1>`;
}

/** A name someone chose: isolated from the text around it, whatever its direction. */
export function Name({ of }) {
  return html`<bdi class="name">${of}</bdi>`;
}

/** A refusal's words: its code translated when we know it, else a general sentence. */
export function refusal(answer) {
  if (!answer || answer.kind !== "error") return t("error_unexpected");
  const key = `error_${answer.code || "unexpected"}`;
  const text = t(key);
  return text === key ? t("error_unexpected") : text;
}

/** An error line under a form, announced when it appears. */
export function Problem({ text }) {
  return text ? html`<p class="problem" role="alert">${text}</p>` : null;
}

const live = () => document.getElementById("live");
let pending = [];
let flush = null;

/**
 * Says `text` through the polite live region, batched (one announcement per second at most),
 * so a burst of arrivals and ticks does not drown the screen reader.
 */
export function announce(text) {
  pending.push(text);
  if (flush) return;
  flush = setTimeout(() => {
    const el = live();
    if (el) el.textContent = pending.slice(-5).join(". ");
    pending = [];
    flush = null;
  }, 1000);
}

/** Clears the live region (at lock: nothing said before may stay in the page). */
export function silence() {
  pending = [];
  if (flush) clearTimeout(flush);
  flush = null;
  const el = live();
  if (el) el.textContent = "";
}

/**
 * Tells the lock timer that the user is here without touching anything (recording a voice
 * note): the page does not lock under them, and the app's key stays alive (app.js).
 */
export function present() {
  window.dispatchEvent(new Event("qanat-activity"));
}

export const RANK = { queued: 0, sent: 1, delivered: 2 };
const MARK = ["○", "✓", "✓✓"];
const WORD = ["tick_queued", "tick_sent", "tick_delivered"];

/** A message's delivery mark: the symbol for the eye, the word for a screen reader. */
export function Tick({ state }) {
  const r = RANK[state] ?? 0;
  return html`<span class=${`tick tick-${state}`}><span aria-hidden="true">${MARK[r]}</span><span class="visually-hidden">${t(WORD[r])}</span></span>`;
}
