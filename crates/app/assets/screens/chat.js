// One conversation (APP.md §5): its history by pages of 100 (older ones on request), ticks
// that only move forward (○ queued, ✓ sent, ✓✓ delivered, with words for screen readers),
// senders' names and "delivered to 2 of 3" in groups, marked read while shown, Enter sends.
// Files and voice notes (files.js): attach and record in the composer, their bubbles with
// progress that only moves forward (history, `transfer` events).

import { useState, useEffect, useRef } from "../vendor/htm-preact.js";
import * as api from "../api.js";
import { t, tParts, when, fullTime } from "../i18n.js";
import { html, Title, Name, Problem, Tick, RANK, refusal } from "../ui.js";
import { LinkCard } from "./invite.js";
import { FileBody, Recorder, SendDialog, Icon, picked, mergeFile } from "./files.js";

const PAGE = 100;
const STATES = ["queued", "sent", "delivered"];

/**
 * `list` with `more` merged in by id (the newer copy wins, but a file's transfer only moves
 * forward), oldest first.
 */
function merge(list, more) {
  const byId = new Map(list.map((m) => [m.id, m]));
  for (const m of more) {
    const old = byId.get(m.id);
    byId.set(m.id, old && (old.file || m.file) ? { ...m, file: mergeFile(old.file, m.file) } : m);
  }
  return [...byId.values()].sort((a, b) => a.at_ms - b.at_ms);
}

/** `list` with message `id`'s file moved forward by `fields` (a `transfer` event, an answer). */
function moveFile(list, id, fields) {
  if (!list) return list;
  let changed = false;
  const out = list.map((m) => {
    if (m.id !== id || !m.file) return m;
    const file = mergeFile(m.file, { ...m.file, ...fields });
    if (file === m.file) return m;
    changed = true;
    return { ...m, file };
  });
  return changed ? out : list;
}

export function Chat({ name, thread, ticks, bump, subscribe, back, refresh, details }) {
  const [messages, setMessages] = useState(null);
  const [older, setOlder] = useState(false); // whether a page before the first exists
  const [problem, setProblem] = useState("");
  const [, setTicked] = useState(0);
  const scroller = useRef(null);
  const loaded = useRef(false);
  const group = thread?.group;
  const isGroup = useRef(group);
  isGroup.current = group; // read by the event handler, which outlives this render

  const latest = async (activity) => {
    const a = await api.call({ cmd: "history", name, limit: PAGE }, { activity });
    if (a.kind !== "messages") return setProblem(refusal(a));
    a.list.forEach((m) => m.state && bump(m.id, m.state));
    setMessages((m) => merge(m || [], a.list));
    if (!loaded.current) {
      loaded.current = true;
      setOlder(a.list.length === PAGE);
    }
    if (document.visibilityState === "visible") {
      await api.call({ cmd: "mark_read", name }, { activity: false });
      refresh();
    }
  };

  // After an older page: the message that was first stays where the reader was.
  const anchor = useRef(null);
  useEffect(() => {
    const el = anchor.current && document.getElementById(`m-${anchor.current}`);
    if (el) el.scrollIntoView({ block: "start" });
    anchor.current = null;
  }, [messages]);

  const earlier = async () => {
    const first = messages[0];
    anchor.current = first.id;
    const a = await api.call({ cmd: "history", name, before: first.id, limit: PAGE });
    if (a.kind !== "messages") return setProblem(refusal(a));
    a.list.forEach((m) => m.state && bump(m.id, m.state));
    setOlder(a.list.length === PAGE);
    setMessages((m) => merge(m, a.list));
  };

  useEffect(() => {
    latest(true).catch(() => {});
    // Shown again (another tab or window was in front): what arrived meanwhile is now read.
    const shown = () => {
      if (document.visibilityState === "visible") {
        api.call({ cmd: "mark_read", name }, { activity: false }).then(refresh, () => {});
      }
    };
    document.addEventListener("visibilitychange", shown);
    const unsubscribe = subscribe((ev) => {
      if (ev.type === "message" && ev.thread === name) {
        setMessages((m) => merge(m || [], [ev]));
        if (document.visibilityState === "visible") {
          api.call({ cmd: "mark_read", name }, { activity: false }).then(refresh, () => {});
        }
      } else if (ev.type === "transfer" && ev.thread === name) {
        const { state, done_bytes, total_bytes, rate_bps, eta_secs } = ev;
        setMessages((m) => moveFile(m, ev.id, { state, done_bytes, total_bytes, rate_bps, eta_secs }));
      } else if (ev.type === "delivery") {
        setTicked((n) => n + 1);
        // Groups count acknowledgements per member: the history has the counts.
        if (isGroup.current) latest(false).catch(() => {});
      } else if (ev.type === "resync") {
        latest(false).catch(() => {});
      }
    });
    return () => {
      unsubscribe();
      document.removeEventListener("visibilitychange", shown);
    };
  }, [name]);

  // The newest message in view when messages arrive at the end.
  const count = messages ? messages.length : 0;
  const newest = count ? messages[count - 1].id : null;
  useEffect(() => {
    const el = scroller.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [newest]);

  const send = async (text) => {
    const a = await api.call({ cmd: "send", to: name, text });
    if (a.kind !== "sent") {
      setProblem(refusal(a));
      return false;
    }
    setProblem("");
    bump(a.id, "queued");
    const now = Date.now();
    const members = thread ? thread.members.length : 1;
    const mine = { id: a.id, thread: name, sender: "me", text, sent_at_ms: now, at_ms: now, state: "queued", delivered: [0, members] };
    setMessages((m) => merge(m || [], [mine]));
    refresh();
    return true;
  };

  /** A file just handed to the app: shown at once, as a sent text is. */
  const sentFile = (id, item, fast) => {
    bump(id, "queued");
    const now = Date.now();
    const members = thread ? thread.members.length : 1;
    const file = {
      transfer: null, name: item.name, mime: item.mime, kind: item.kind, size: item.blob.size,
      duration_ms: item.duration_ms, state: "sending", done_bytes: 0, total_bytes: item.blob.size,
      rate_bps: 0, eta_secs: null, fast,
    };
    const mine = { id, thread: name, sender: "me", text: "", sent_at_ms: now, at_ms: now, state: "queued", delivered: [0, members], file };
    setMessages((m) => merge(m || [], [mine]));
    refresh();
  };
  const updateFile = (id) => (fields) => setMessages((m) => moveFile(m, id, fields));

  const state = thread ? thread.state : "active";
  // Waiting for the invitation's answer: the link first, where it is seen without scrolling.
  return html`<section class="chat" aria-labelledby="chat-title">
    <header class="chat-head">
      <button class="back" onClick=${back}><span class="flip" aria-hidden="true">←</span><span class="visually-hidden">${t("back_to_list")}</span></button>
      <${Title} id="chat-title"><${Name} of=${name} /><//>
      ${group && html`<span class="hint">${t("members", { count: thread.members.length })}</span>`}
      ${!group && thread && thread.verified && html`<span class="verified-tag">${t("verified")}</span>`}
      <button class="details" onClick=${details}>${group ? t("group_details") : t("contact_details")}</button>
    </header>
    <div class="scroller" ref=${scroller}>
      ${state === "inviting" && html`<${Waiting} name=${name} />`}
      ${older && html`<div class="older"><button onClick=${earlier}>${t("earlier")}</button></div>`}
      ${messages === null
        ? html`<p class="hint">${t("loading")}</p>`
        : html`<ol class="messages" aria-label=${t("messages")}>
            ${messages.map((m) => html`<${Message} key=${m.id} m=${m} group=${group} rank=${ticks.get(m.id)} update=${updateFile(m.id)} />`)}
          </ol>`}
    </div>
    ${state === "joining" && html`<p class="note">${tParts("joining_text", { name: html`<${Name} of=${name} />` })}</p>`}
    ${state === "left" ? html`<p class="note">${t("left_text")}</p>` : state !== "inviting" && html`<${Composer} name=${name} group=${group} send=${send} sentFile=${sentFile} setProblem=${setProblem} />`}
    <${Problem} text=${problem} />
  </section>`;
}

function Message({ m, group, rank, update }) {
  const mine = m.sender === "me";
  // The highest state seen for this id, whichever came first: history or event.
  const r = Math.max(RANK[m.state] ?? 0, rank ?? 0);
  const state = STATES[r];
  const d = m.delivered;
  return html`<li id=${`m-${m.id}`} class=${`msg ${mine ? "mine" : "theirs"}${m.file ? " has-file" : ""}`}>
    ${group && !mine && html`<p class="sender"><${Name} of=${m.sender} /></p>`}
    ${mine && html`<span class="visually-hidden">${t("you_prefix")}</span>`}
    ${m.file && html`<${FileBody} m=${m} mine=${mine} update=${update} />`}
    ${!m.file && html`<p class="text" dir="auto">${m.text}</p>`}
    <p class="meta">
      <time datetime=${new Date(m.at_ms).toISOString()} title=${fullTime(m.at_ms)}>${when(m.at_ms)}</time>
      ${mine && html` <${Tick} state=${state} />`}
      ${mine && group && d && d[1] > 1 && r >= 1 && html` <span class="count">${t("delivered_of", { count: d[0], total: d[1] })}</span>`}
    </p>
  </li>`;
}

function Composer({ name, group, send, sentFile, setProblem }) {
  const [busy, setBusy] = useState(false);
  const [recording, setRecording] = useState(false);
  const [item, setItem] = useState(null); // a file or recording waiting in the send dialog
  const box = useRef(null);

  const choose = async (e) => {
    const file = e.currentTarget.files && e.currentTarget.files[0];
    e.currentTarget.value = ""; // the same file can be chosen again
    if (!file) return;
    setProblem("");
    setItem(await picked(file));
  };
  const recorded = (it) => {
    setRecording(false);
    setItem(it);
  };
  const stopped = (why) => {
    setRecording(false);
    setProblem(why || "");
  };
  const closeDialog = () => {
    setItem(null);
    if (box.current) box.current.focus();
  };
  const dialog = item && html`<${SendDialog} to=${name} group=${group} item=${item} close=${closeDialog} sent=${sentFile} />`;
  // While recording, the form is hidden, not gone: what was typed stays.
  const recorder = recording && html`<div class="composer recording"><${Recorder} done=${recorded} cancel=${stopped} /></div>`;
  const submit = async (e) => {
    if (e) e.preventDefault();
    const text = box.current.value.trim();
    if (!text || busy) return;
    setBusy(true);
    const ok = await send(text).catch(() => false);
    if (ok) box.current.value = "";
    setBusy(false);
    box.current.focus();
  };
  const key = (e) => {
    // Enter sends; Shift+Enter makes a new line; nothing while an input method composes.
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) submit(e);
  };
  return html`${recorder}<form class="composer" onSubmit=${submit} hidden=${recording}>
    <input type="file" id="attach" class="visually-hidden file-input" onChange=${choose} />
    <label for="attach" class="icon-button" title=${t("attach_file")}><${Icon} name="clip" /><span class="visually-hidden">${t("attach_file")}</span></label>
    <button type="button" class="icon-button" title=${t("record_voice")} onClick=${() => { setProblem(""); setRecording(true); }}>
      <${Icon} name="mic" /><span class="visually-hidden">${t("record_voice")}</span></button>
    <label for="composer" class="visually-hidden">${tParts("message_to", { name: html`<${Name} of=${name} />` })}</label>
    <textarea id="composer" ref=${box} rows="2" dir="auto" onKeyDown=${key} placeholder=${t("write_message")}></textarea>
    <button class="primary send" type="submit" disabled=${busy}>
      <span class="flip" aria-hidden="true">➤</span><span class="visually-hidden">${t("send")}</span></button>
  </form>${dialog}`;
}

function Waiting({ name }) {
  const [inv, setInv] = useState(null);
  useEffect(() => {
    api.call({ cmd: "invitation", name }, { activity: false }).then((a) => a.kind === "invitation" && setInv(a), () => {});
  }, [name]);
  return html`<div class="note">
    <p>${tParts("waiting_text", { name: html`<${Name} of=${name} />` })}</p>
    ${inv && html`<${LinkCard} inv=${inv} />`}
  </div>`;
}
