// Files and voice notes in a conversation (docs/APP.md §5.1; docs/ATTACHMENTS.md §3.15): the
// composer's attach and record buttons, the dialog that shows the estimate before anything is
// sent (hidden by default, "faster" only behind its warning), the upload in parts, and the
// bubbles of file messages.
//
// What a contact chose (a file's name, type, bytes) is never trusted: names are shown as text
// with control and direction characters removed, and saved under that cleaned name; an image is
// decoded only when the user asks, and only if its first bytes say PNG, JPEG, WebP or GIF
// (never SVG, never because of the type it claims); a voice note plays only if its first bytes
// say WebM, Ogg, WAV or MP4. The page never names a path on the disk: files go to the app in
// parts of 48,000 bytes (`attach_part`) and come back from it in parts (`file_part`). Every
// blob: URL made here is revoked when what showed it goes.

import { useState, useEffect, useRef } from "../vendor/htm-preact.js";
import * as api from "../api.js";
import { t, tParts, span, bytes, clock, percent } from "../i18n.js";
import { html, Name, Problem, refusal, announce, present } from "../ui.js";

/** Bytes per `attach_part`: 64,000 in base64, so the command stays under the app's 64 KiB body. */
export const PART = 48000;
/** Bytes asked per `file_part` (the contract's maximum). */
export const READ = 48 * 1024;
/** The longest voice note. */
export const MAX_VOICE_MS = 5 * 60 * 1000;
/** The recorder's bit rate: about 90 KB for 30 seconds. */
const VOICE_BPS = 24000;
const VOICE_TYPE = "audio/webm;codecs=opus";

// ---- Bytes ----

function base64(u8) {
  let s = "";
  for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000));
  return btoa(s);
}

function unbase64(b64) {
  const s = atob(b64);
  const u8 = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) u8[i] = s.charCodeAt(i);
  return u8;
}

const starts = (b, sig, at = 0) => sig.every((x, i) => b[at + i] === x);
const ascii = (s) => [...s].map((c) => c.charCodeAt(0));

/** The image type the first bytes say (PNG, JPEG, WebP, GIF), else null. Never SVG. */
export function imageType(b) {
  if (starts(b, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return "image/png";
  if (starts(b, [0xff, 0xd8, 0xff])) return "image/jpeg";
  if (starts(b, ascii("GIF87a")) || starts(b, ascii("GIF89a"))) return "image/gif";
  if (starts(b, ascii("RIFF")) && starts(b, ascii("WEBP"), 8)) return "image/webp";
  return null;
}

/** The audio type the first bytes say (WebM, Ogg, WAV, MP4), else null. */
export function audioType(b) {
  if (starts(b, [0x1a, 0x45, 0xdf, 0xa3])) return "audio/webm";
  if (starts(b, ascii("OggS"))) return "audio/ogg";
  if (starts(b, ascii("RIFF")) && starts(b, ascii("WAVE"), 8)) return "audio/wav";
  if (starts(b, ascii("ftyp"), 4)) return "audio/mp4";
  return null;
}

// Control characters, and the marks that reorder text (a name "photo{U+202E}gpj.exe" shows as
// "photoexe.jpg"): none of them belongs in a file's name.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g;

/**
 * A name someone else chose, made safe to show and to save under: no control or direction
 * characters, no path separators (or the characters Windows refuses), no leading dots or
 * spaces, at most 120 characters; "file" if nothing is left.
 */
export function safeName(name) {
  let n = String(name || "").replace(UNSAFE, "").replace(/[/\\:*?"<>|]/g, "_");
  n = n.replace(/^[.\s]+/, "").replace(/[.\s]+$/, "");
  if (n.length > 120) {
    const dot = n.lastIndexOf(".");
    const ext = dot > 0 && n.length - dot <= 10 ? n.slice(dot) : "";
    n = n.slice(0, 120 - ext.length) + ext;
  }
  return n || "file";
}

/** The whole file of message `id`, from the app in parts (ours too). Throws the refusal. */
async function fetchFile(id) {
  const parts = [];
  let offset = 0;
  let total = null;
  while (total === null || offset < total) {
    const a = await api.call({ cmd: "file_part", id, offset, len: READ });
    if (a.kind !== "file_data") throw a;
    const part = unbase64(a.data);
    total = a.total;
    if (part.length === 0 && offset < total) throw { kind: "error", code: "file_not_ready" };
    parts.push(part);
    offset += part.length;
  }
  return parts;
}

const head = (parts) => (parts.length ? parts[0].subarray(0, 16) : new Uint8Array());

// ---- Words shared by the list and the bubbles ----

/** One line for the conversation list's preview of a file message. */
export function fileSummary(f) {
  if (f.kind === "voice") return t("voice_note_of", { duration: clock(f.duration_ms || 0) });
  return t(f.kind === "image" ? "image_named" : "file_named", { name: safeName(f.name) });
}

// Transfers only move forward: a late history page or event cannot move a bar back.
const RANK = { offered: 0, receiving: 1, sending: 1, received: 2, sent: 2, cancelled: 2, failed: 2 };

/** `old` and `next` (a message's `file`, or a `transfer` event's fields) merged forward. */
export function mergeFile(old, next) {
  if (!old) return next;
  if (!next) return old;
  const ro = RANK[old.state] ?? 0;
  const rn = RANK[next.state] ?? 0;
  if (ro === 2 && old.state !== next.state) return old; // ended: stays as it ended
  if (rn < ro) return old;
  const merged = { ...old, ...next };
  if (rn === ro && (next.done_bytes ?? 0) < (old.done_bytes ?? 0)) {
    merged.done_bytes = old.done_bytes;
    merged.eta_secs = old.eta_secs;
  }
  return merged;
}

// ---- Icons (drawn here: no emoji font needed) ----

export function Icon({ name }) {
  const paths = {
    clip: html`<path d="M15.5 6.5 8 14a2 2 0 0 0 2.8 2.8l8-8a4 4 0 0 0-5.6-5.6l-8 8a6 6 0 0 0 8.5 8.5l6.3-6.3" />`,
    mic: html`<rect x="9" y="2.5" width="6" height="11.5" rx="3" /><path d="M5.5 11a6.5 6.5 0 0 0 13 0M12 17.5V21M8.5 21h7" />`,
    file: html`<path d="M6 2.5h8l4 4v15H6zM14 2.5v4h4" />`,
    image: html`<rect x="3" y="4" width="18" height="16" rx="2" /><path d="m3 17 5-5 4 4 3-3 6 6" /><circle cx="15.5" cy="8.5" r="1.5" />`,
    voice: html`<path d="M4 10v4M8 7v10M12 4v16M16 8v8M20 11v2" />`,
    stop: html`<rect x="6" y="6" width="12" height="12" rx="1.5" />`,
  };
  return html`<svg class="icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false">${paths[name]}</svg>`;
}

// ---- Choosing a file, recording a voice note ----

/** What the send dialog needs for a file the user picked: its kind from its first bytes. */
export async function picked(file) {
  const first = new Uint8Array(await file.slice(0, 16).arrayBuffer());
  const image = imageType(first);
  return {
    blob: file,
    name: safeName(file.name),
    mime: image || file.type || "application/octet-stream",
    kind: image ? "image" : "file",
    duration_ms: null,
  };
}

function voiceName(type) {
  const ext = type.includes("ogg") ? "ogg" : type.includes("mp4") ? "m4a" : "webm";
  const d = new Date();
  const two = (n) => String(n).padStart(2, "0");
  return `voice-${d.getFullYear()}${two(d.getMonth() + 1)}${two(d.getDate())}-${two(d.getHours())}${two(d.getMinutes())}.${ext}`;
}

/**
 * Records from the microphone while mounted: a timer, Stop (→ `done(item)`), Discard
 * (→ `cancel()`); stops by itself at 5 minutes. The microphone is released when it ends, and
 * if the page locks meanwhile (unmounting it), nothing is kept. Recording counts as the user
 * being there (the lock timer), as typing does.
 */
export function Recorder({ done, cancel }) {
  const [elapsed, setElapsed] = useState(0);
  const [live, setLive] = useState(false);
  const rec = useRef(null);
  const keep = useRef(false); // whether stopping sends (Stop) or throws away (Discard, unmount)
  const stopRef = useRef(null);
  const stopButton = useRef(null);
  useEffect(() => {
    if (live && stopButton.current) stopButton.current.focus();
  }, [live]);

  useEffect(() => {
    let stream = null;
    let timer = null;
    let awake = null;
    let gone = false;
    const chunks = [];
    let started = 0;
    const release = () => {
      clearInterval(timer);
      clearInterval(awake);
      if (stream) stream.getTracks().forEach((tr) => tr.stop());
      stream = null;
    };
    (async () => {
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.MediaRecorder) {
        return cancel(t("mic_unavailable"));
      }
      try {
        stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      } catch (e) {
        const why = e && e.name === "NotAllowedError" ? "mic_denied" : e && e.name === "NotFoundError" ? "mic_missing" : "mic_unavailable";
        return cancel(t(why));
      }
      if (gone) return release();
      const options = { audioBitsPerSecond: VOICE_BPS };
      if (MediaRecorder.isTypeSupported && MediaRecorder.isTypeSupported(VOICE_TYPE)) options.mimeType = VOICE_TYPE;
      let r;
      try {
        r = new MediaRecorder(stream, options);
      } catch {
        release();
        return cancel(t("mic_unavailable"));
      }
      rec.current = r;
      r.ondataavailable = (e) => e.data && e.data.size && chunks.push(e.data);
      r.onstop = () => {
        // WebM from Chromium has no duration: the note's length is what the timer measured.
        const duration_ms = Math.min(MAX_VOICE_MS, Math.round(performance.now() - started));
        release();
        if (!keep.current || gone) return;
        const type = r.mimeType || options.mimeType || "audio/webm";
        const blob = new Blob(chunks, { type });
        done({ blob, name: voiceName(type), mime: type.split(";")[0], kind: "voice", duration_ms });
      };
      started = performance.now();
      r.start(1000);
      setLive(true);
      announce(t("recording"));
      timer = setInterval(() => {
        const ms = performance.now() - started;
        setElapsed(ms);
        if (ms >= MAX_VOICE_MS && r.state === "recording") {
          announce(t("recording_limit", { max: clock(MAX_VOICE_MS) }));
          keep.current = true;
          r.stop();
        }
      }, 250);
      awake = setInterval(present, 10000);
    })();
    stopRef.current = () => {
      const r = rec.current;
      if (r && r.state === "recording") r.stop();
      else release();
    };
    return () => {
      gone = true;
      keep.current = false;
      stopRef.current();
    };
  }, []);

  const stop = () => {
    keep.current = true;
    stopRef.current();
  };
  const discard = () => {
    keep.current = false;
    stopRef.current();
    cancel("");
  };
  // Esc throws the recording away (and does not close the conversation).
  const key = (e) => {
    if (e.key === "Escape") {
      e.preventDefault();
      discard();
    }
  };
  return html`<div class="recorder" role="group" aria-label=${t("record_voice")} onKeyDown=${key}>
    <span class="rec-time"><span class=${`rec-dot${live ? " on" : ""}`} aria-hidden="true"></span>
      <span class="visually-hidden">${t("recording")} </span>
      <span aria-hidden="true">${live ? t("recording") : t("mic_starting")} </span>
      <span dir="ltr">${clock(elapsed)}</span> / <span dir="ltr">${clock(MAX_VOICE_MS)}</span></span>
    <span class="rec-actions">
      <button type="button" onClick=${discard}>${t("discard")}</button>
      <button type="button" class="primary" ref=${stopButton} onClick=${stop} disabled=${!live}>
        <${Icon} name="stop" /> ${t("stop_recording")}</button>
    </span>
  </div>`;
}

// ---- The send dialog: estimate, hidden or faster, upload ----

/**
 * Sends `item` ({blob, name, mime, kind, duration_ms}) to `to` in parts, then commits it.
 * `progress(share)` hears how far; `aborted()` says whether the user cancelled. The upload is
 * aborted on any refusal. Returns the `sent` answer, or the refusal.
 */
async function upload(to, item, fast, progress, aborted) {
  const begin = await api.call({
    cmd: "attach_begin", to, name: item.name, mime: item.mime, size: item.blob.size,
    kind: item.kind, duration_ms: item.duration_ms, caption: null,
  });
  if (begin.kind !== "attach") return begin;
  const id = begin.id;
  const abort = () => api.call({ cmd: "attach_abort", id }, { activity: false }).catch(() => {});
  try {
    for (let offset = 0; offset < item.blob.size; offset += PART) {
      if (aborted()) {
        abort();
        return null;
      }
      const part = new Uint8Array(await item.blob.slice(offset, offset + PART).arrayBuffer());
      const a = await api.call({ cmd: "attach_part", id, offset, data: base64(part) });
      if (a.kind !== "ok") {
        abort();
        return a;
      }
      progress(Math.min(1, (offset + part.length) / item.blob.size));
    }
    if (aborted()) {
      abort();
      return null;
    }
    const sent = await api.call({ cmd: "attach_commit", id, fast });
    if (sent.kind !== "sent") abort();
    return sent;
  } catch (e) {
    abort();
    throw e;
  }
}

function Kind({ item }) {
  const icon = item.kind === "voice" ? "voice" : item.kind === "image" ? "image" : "file";
  return html`<div class="file-card">
    <${Icon} name=${icon} />
    <div class="file-about">
      <bdi class="file-name">${safeName(item.name)}</bdi>
      <span class="file-size">${bytes(item.size ?? item.blob.size)}${item.kind === "voice" && item.duration_ms != null ? html` · <span dir="ltr">${clock(item.duration_ms)}</span>` : ""}</span>
    </div>
  </div>`;
}

/** "about 40 minutes", or "40 minutes to 1.2 hours" when the estimate is wide. */
function about(cost) {
  const low = cost.secs_low;
  const high = Math.max(cost.secs_high, low);
  if (high <= low * 1.5) return t("about_time", { time: span(low) });
  return t("between_times", { low: span(low), high: span(high) });
}

const extra = (c) => (c.bytes_up || 0) + (c.bytes_down || 0);

/**
 * The dialog before sending: what, how big, how long and what it costs; "Send normally
 * (hidden)" is the default; "Faster" only when the network and recipient allow it, behind its
 * warning and a checkbox; the limit if the file is too large. Then the upload, with its
 * progress and Cancel.
 */
export function SendDialog({ to, group, item, close, sent }) {
  const ref = useRef(null);
  const [est, setEst] = useState(null);
  const [problem, setProblem] = useState("");
  const [faster, setFaster] = useState(false); // the warning is open
  const [understood, setUnderstood] = useState(false);
  const [sending, setSending] = useState(null); // share uploaded, while uploading
  const stopped = useRef(false);
  const preview = useRef(null);
  const normal = useRef(null);
  // The default is "Send normally (hidden)": it takes the focus once it is there.
  useEffect(() => {
    if (est && normal.current) normal.current.focus();
  }, [est]);
  // The warning, once opened, is scrolled into view from its first line (a phone shows it all).
  const panel = useRef(null);
  useEffect(() => {
    if (faster && panel.current) panel.current.scrollIntoView({ block: "start" });
  }, [faster]);
  if (item.kind === "voice" && !preview.current) preview.current = URL.createObjectURL(item.blob);

  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    api.call({ cmd: "estimate", to, size: item.blob.size }).then(
      (a) => (a.kind === "estimate" ? setEst(a) : setProblem(refusal(a))),
      (e) => !(e instanceof api.Locked) && setProblem(t("error_offline")),
    );
    return () => {
      stopped.current = true;
      if (preview.current) URL.revokeObjectURL(preview.current);
      if (d && d.open) d.close();
    };
  }, []);

  const go = async (fast) => {
    stopped.current = false;
    setProblem("");
    setSending(0);
    let a;
    try {
      a = await upload(to, item, fast, setSending, () => stopped.current);
    } catch (e) {
      if (e instanceof api.Locked) return;
      a = { kind: "error" };
    }
    if (a === null) return; // cancelled: the dialog is gone or going
    if (a.kind !== "sent") {
      setSending(null);
      return setProblem(refusal(a));
    }
    announce(t("announce_file_sending", { name: to }));
    sent(a.id, item, fast);
    close();
  };
  const cancel = (e) => {
    if (e) e.preventDefault();
    stopped.current = true;
    close();
  };

  const title = item.kind === "voice" ? t("send_voice_title") : t("send_file_title");
  const who = html`<${Name} of=${to} />`;
  const fast = est && est.fast;
  return html`<dialog ref=${ref} class="send-dialog" aria-labelledby="send-title" onCancel=${cancel}>
    <h2 id="send-title">${title}</h2>
    <${Kind} item=${item} />
    ${preview.current && html`<audio class="voice-preview" controls src=${preview.current} aria-label=${t("your_recording")}></audio>`}
    ${!est && !problem && html`<p class="hint">${t("estimating")}</p>`}
    ${est && !est.allowed && html`<p class="warning" role="alert">${t("file_too_large", { size: bytes(item.blob.size), limit: bytes(est.limit) })}</p>`}
    ${est && est.allowed && html`
      <p>${tParts(group ? "estimate_group" : "estimate_time", { time: about(est.hidden), name: who, count: est.recipients })}</p>
      <p class="hint">${extra(est.hidden) === 0 ? t("estimate_no_extra") : t("estimate_extra", { size: bytes(extra(est.hidden)) })}</p>`}
    ${sending !== null
      ? html`<div class="upload">
          <label for="upload-progress">${t("handing_over")}</label>
          <progress id="upload-progress" max="100" value=${Math.floor(sending * 100)} aria-valuetext=${percent(sending)}></progress>
          <div class="actions"><button type="button" onClick=${cancel}>${t("cancel")}</button></div>
        </div>`
      : html`<div class="actions">
          ${est && est.allowed && html`<button type="button" class="primary send-hidden" ref=${normal} onClick=${() => go(false)}>${t("send_hidden")}</button>`}
          <button type="button" class="cancel" onClick=${cancel}>${est && !est.allowed ? t("close") : t("cancel")}</button>
          ${fast && est.allowed && html`<button type="button" class="quiet more" aria-expanded=${faster ? "true" : "false"} aria-controls="fast-panel"
            onClick=${() => setFaster(!faster)}>${t("faster_option")}</button>`}
        </div>
        ${fast && est.allowed && faster && html`<div id="fast-panel" class="fast-panel" ref=${panel}>
          <p class="warning">${t("fast_warning", { fast: span(fast.secs_low), normal: span(est.hidden.secs_low), size: bytes(Math.max(0, extra(fast) - extra(est.hidden))) })}</p>
          <label class="choice"><input type="checkbox" checked=${understood} onChange=${(e) => setUnderstood(e.currentTarget.checked)} />
            <span>${t("fast_understood")}</span></label>
          <div class="actions"><button type="button" class="danger send-fast" disabled=${!understood} onClick=${() => go(true)}>${t("send_fast")}</button></div>
        </div>`}`}
    <${Problem} text=${problem} />
  </dialog>`;
}

// ---- The bubble of a file message ----

/** The parts of a bubble that show a file: what it is, its progress, and what can be done. */
export function FileBody({ m, mine, update }) {
  const f = m.file;
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState("");
  const [url, setUrl] = useState(null); // a blob: URL shown here (audio or image)
  const [notShown, setNotShown] = useState(false); // an "image" whose bytes are no image we show
  const [confirm, setConfirm] = useState(false);
  const [saved, setSaved] = useState(false);
  const urls = useRef([]);
  useEffect(() => () => urls.current.forEach((u) => URL.revokeObjectURL(u)), []);
  const blobUrl = (blob) => {
    const u = URL.createObjectURL(blob);
    urls.current.push(u);
    return u;
  };
  const labelId = `fn-${m.id}`;

  const act = async (cmd, next, announcement) => {
    setBusy(true);
    const a = await api.call({ cmd, id: m.id }).catch(() => null);
    setBusy(false);
    setConfirm(false);
    if (!a || a.kind !== "ok") return setProblem(refusal(a));
    setProblem("");
    if (next) update({ state: next });
    if (announcement) announce(announcement);
  };

  const load = async (what) => {
    setBusy(true);
    setProblem("");
    try {
      const parts = await fetchFile(m.id);
      if (what === "voice") {
        const type = audioType(head(parts));
        if (!type) return setProblem(t("not_audio"));
        setUrl(blobUrl(new Blob(parts, { type })));
      } else if (what === "image") {
        const type = imageType(head(parts));
        if (!type) return setNotShown(true);
        setUrl(blobUrl(new Blob(parts, { type })));
      } else {
        // A download under the cleaned name, as bytes (the browser does not open it).
        const a = document.createElement("a");
        a.href = blobUrl(new Blob(parts, { type: "application/octet-stream" }));
        a.download = safeName(f.name);
        a.click();
        announce(t("saved_file"));
        setSaved(true);
      }
    } catch (e) {
      if (!(e instanceof api.Locked)) setProblem(refusal(e && e.kind ? e : null));
    } finally {
      setBusy(false);
    }
  };

  const state = f.state;
  const moving = state === "sending" || state === "receiving";
  // Ours can be played or looked at while it travels (the app keeps it); saved once it is sent.
  const done = state === "received" || (mine && (state === "sent" || state === "sending"));
  const savable = state === "received" || (mine && state === "sent");
  const share = f.total_bytes ? (f.done_bytes || 0) / f.total_bytes : 0;
  const progressText = f.eta_secs != null && share < 1
    ? t("progress_eta", { percent: percent(share), time: span(f.eta_secs) })
    : percent(share);
  const icon = f.kind === "voice" ? "voice" : f.kind === "image" ? "image" : "file";
  const sender = html`<${Name} of=${m.sender} />`;
  return html`<div class="file-body">
    <div class="file-card">
      <${Icon} name=${icon} />
      <div class="file-about">
        <span class="visually-hidden">${t(`kind_${f.kind === "voice" || f.kind === "image" ? f.kind : "file"}`)}: </span>
        <bdi class="file-name" id=${labelId}>${safeName(f.name)}</bdi>
        <span class="file-size">${bytes(f.size)}${f.kind === "voice" && f.duration_ms != null ? html` · <span dir="ltr">${clock(f.duration_ms)}</span>` : ""}</span>
      </div>
    </div>
    ${m.text && html`<p class="text" dir="auto">${m.text}</p>`}
    ${moving && html`<div class="transfer">
      <progress max="100" value=${Math.floor(share * 100)} aria-labelledby=${labelId} aria-valuetext=${progressText}></progress>
      <p class="progress-text"><span>${t(mine ? "state_sending" : "state_receiving")}</span> · <span>${progressText}</span>${f.fast ? html` · <span>${t("fast_tag")}</span>` : ""}</p>
    </div>`}
    ${state === "offered" && !mine && html`<div class="offer">
      <p>${tParts("file_offered", { name: sender })}</p>
      <div class="actions">
        <button class="primary" disabled=${busy} onClick=${() => act("file_accept", "receiving", t("announce_file_accepted"))}>${t("accept")}</button>
        <button disabled=${busy} onClick=${() => act("file_decline", "cancelled", t("announce_file_declined"))}>${t("decline")}</button>
      </div>
      <p class="hint">${tParts("decline_told", { name: sender })}</p>
    </div>`}
    ${state === "cancelled" && html`<p class="file-state">${t(mine ? "state_cancelled_out" : "state_cancelled_in")}</p>`}
    ${state === "failed" && html`<p class="file-state problem">${t(mine ? "state_failed_out" : "state_failed_in")}</p>`}
    ${moving && (confirm
      ? html`<div class="confirm" role="group" aria-label=${t("confirm")}>
          <p>${t(mine ? "stop_sending_confirm" : "stop_receiving_confirm")}</p>
          <div class="actions">
            <button class="danger" disabled=${busy} onClick=${() => act("transfer_cancel", "cancelled", t("announce_file_cancelled"))}>${t(mine ? "stop_sending" : "stop_receiving")}</button>
            <button onClick=${() => setConfirm(false)}>${t("keep_going")}</button>
          </div></div>`
      : html`<div class="actions file-actions"><button class="stop-transfer" aria-describedby=${labelId} onClick=${() => setConfirm(true)}>${t(mine ? "stop_sending" : "stop_receiving")}</button></div>`)}
    ${done && f.kind === "voice" && (url
      ? html`<audio controls autoplay src=${url} aria-labelledby=${labelId}></audio>`
      : html`<div class="actions file-actions"><button class="play-voice" aria-describedby=${labelId} disabled=${busy} onClick=${() => load("voice")}>
          <span aria-hidden="true">▶ </span>${t("play_voice")}</button></div>`)}
    ${done && f.kind === "image" && (url
      ? html`<img class="file-image" src=${url} alt=${t("image_named", { name: safeName(f.name) })} />`
      : !notShown && html`<div class="actions file-actions"><button class="show-image" aria-describedby=${labelId} disabled=${busy} onClick=${() => load("image")}>${t("show_image")}</button></div>`)}
    ${notShown && html`<p class="hint">${t("not_an_image")}</p>`}
    ${savable && (f.kind === "file" || notShown || (f.kind === "image" && url)) && html`<div class="actions file-actions">
      <button class="save-file" aria-describedby=${labelId} disabled=${busy} onClick=${() => load("save")}>${t("save_file")}</button></div>`}
    ${saved && html`<p class="hint">${t("saved_file")}</p>`}
    ${busy && html`<p class="hint" role="status">${t("loading")}</p>`}
    <${Problem} text=${problem} />
  </div>`;
}

