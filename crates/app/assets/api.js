// The page's only way to the app (docs/APP.md §1.1): one command per POST /api/call, the event
// stream on GET /api/events. The key lives in this module's variable only: never stored, gone
// with a reload, a lock or a 401.

let key = null;
let locked = () => {};
let gone = () => {};

/** Thrown by call() when the app answered 401 or 403: the page shows unlock, or "start again". */
export class Locked extends Error {}

export function setKey(k) { key = k; }
export function hasKey() { return key !== null; }
export function forgetKey() { key = null; }
/** What to do when the app says the key is no longer good. */
export function onLocked(f) { locked = f; }
/**
 * What to do when the app no longer knows this page's cookie (403: it was restarted, or the
 * start link was used twice): only a new start link helps.
 */
export function onGone(f) { gone = f; }

function headers(activity) {
  const h = {};
  if (key) h["X-Qanat-Key"] = key;
  // Only what the user did keeps the key alive (APP.md §2.1): polls and refreshes do not.
  if (activity) h["X-Qanat-Activity"] = "1";
  return h;
}

/**
 * Sends one command ({cmd: "send", to, text}) and returns the answer (an object with `kind`;
 * refusals are {kind: "error", code, message}). `activity`: whether the user asked for it.
 */
export async function call(cmd, { activity = true } = {}) {
  const r = await fetch("/api/call", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers(activity) },
    body: JSON.stringify(cmd),
    cache: "no-store",
  });
  if (r.status === 401 || r.status === 403) {
    key = null;
    (r.status === 401 ? locked : gone)();
    throw new Locked();
  }
  if (!r.ok) throw new Error(`http ${r.status}`);
  return r.json();
}

/**
 * How hard `passphrase` is to guess: {score: 0..4, warning: key|null, suggestions: [key]}
 * (zxcvbn in the app; no key needed, nothing kept). Null if the app did not answer.
 */
export async function strength(passphrase) {
  // Twice at most: the app answers 10 a second, and a burst waits a second for the next.
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const r = await fetch("/api/strength", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ passphrase }),
        cache: "no-store",
      });
      if (r.status === 429 && attempt === 0) {
        await sleep(1000);
        continue;
      }
      return r.ok ? await r.json() : null;
    } catch {
      return null;
    }
  }
  return null;
}

const sleep = (ms) => new Promise((f) => setTimeout(f, ms));

/**
 * Reads the event stream while the key lasts, reconnecting with a growing pause. `onEvent` gets
 * each event object; `onResync` is called on every (re)connection and after `event: resync`
 * (events were missed: refetch what is shown). `onLink` hears whether the stream is up (false
 * while it waits to reconnect). Returns a function that stops it.
 */
export function events(onEvent, onResync, onLink = () => {}) {
  let stopped = false;
  let ctrl = null;
  (async () => {
    let pause = 1000;
    while (!stopped && key) {
      ctrl = new AbortController();
      try {
        const r = await fetch("/api/events", { headers: headers(false), signal: ctrl.signal, cache: "no-store" });
        if (r.status === 401 || r.status === 403) {
          key = null;
          if (!stopped) (r.status === 401 ? locked : gone)();
          return;
        }
        if (r.ok && r.body) {
          pause = 1000;
          onLink(true);
          onResync();
          await read(r.body, onEvent, onResync);
        }
      } catch {
        // A dropped connection or an abort: retried below unless stopped.
      }
      if (stopped) return;
      onLink(false);
      await sleep(pause);
      pause = Math.min(pause * 2, 30000);
    }
  })();
  return () => {
    stopped = true;
    if (ctrl) ctrl.abort();
  };
}

async function read(body, onEvent, onResync) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let name = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
        // ": ping" and anything else: ignored.
      }
      if (name === "resync") onResync();
      else if (data) {
        try { onEvent(JSON.parse(data)); } catch { /* not JSON: ignored */ }
      }
    }
  }
}
