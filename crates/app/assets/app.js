// The page: a state machine over three phases (docs/APP.md §5).
//   first  — no profile yet: the first run (language, passphrase, traffic profile)
//   unlock — a profile, no key in this page: the lock screen
//   main   — unlocked: conversations, a conversation, new contact, accept, a contact's or a
//            group's details, a new group, a group invitation, network and privacy, settings
//   stopped — after Quit: the client and its keys are gone; unlocking starts it again
// Locking (the button, the profile's timeout without the user, a 401) forgets the key and
// unmounts everything the main phase rendered: messages, names, the list.

import { html, render, useState, useEffect, useRef } from "./vendor/htm-preact.js";
import * as api from "./api.js";
import { t, setLanguage, browserLanguage, language } from "./i18n.js";
import { Title, announce, silence, RANK } from "./ui.js";
import { FirstRun } from "./screens/first.js";
import { Unlock } from "./screens/unlock.js";
import { List } from "./screens/list.js";
import { Chat } from "./screens/chat.js";
import { Invite } from "./screens/invite.js";
import { Accept } from "./screens/accept.js";
import { Contact, Group } from "./screens/contact.js";
import { NewGroup, GroupInvitation } from "./screens/groups.js";
import { Network } from "./screens/network.js";
import { Settings } from "./screens/settings.js";

// Page errors (and CSP refusals) are kept for the browser tests to read (APP.md §7).
window.qanatErrors = [];
window.addEventListener("error", (e) => window.qanatErrors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => {
  if (!(e.reason instanceof api.Locked)) window.qanatErrors.push(String(e.reason));
});
document.addEventListener("securitypolicyviolation", (e) => window.qanatErrors.push(`csp ${e.violatedDirective}`));

function App() {
  const [phase, setPhase] = useState({ name: "loading" });
  const [, setWords] = useState(0); // bumped when the language changes: t() is not reactive

  const relanguage = async (l) => {
    await setLanguage(l);
    setWords((n) => n + 1);
  };

  const start = async () => {
    try {
      const s = await api.call({ cmd: "app_state" }, { activity: false });
      if (s.kind !== "state") throw new Error(s.kind);
      if (s.profile === "none") setPhase({ name: "first", gateways: s.gateways || [] });
      else setPhase({ name: "unlock" });
    } catch (e) {
      if (!(e instanceof api.Locked)) setPhase({ name: "offline" });
    }
  };

  const lock = () => {
    api.forgetKey();
    silence();
    document.title = "Qanat";
    setPhase({ name: "unlock" });
  };

  const unlocked = async (profileLanguage) => {
    // The profile's language wins over the browser's from now on.
    let settings = null;
    try {
      settings = await api.call({ cmd: "settings" }, { activity: false });
    } catch {
      /* a 401 already showed the lock screen */
    }
    const l = settings?.language || profileLanguage;
    if (l && l !== language()) await relanguage(l);
    setPhase({ name: "main", lockSecs: settings?.lock_timeout_secs || 300 });
  };

  useEffect(() => {
    api.onLocked(lock);
    api.onGone(() => {
      lock();
      setPhase({ name: "offline" });
    });
    relanguage(browserLanguage()).then(start, () => setPhase({ name: "offline" }));
  }, []);

  switch (phase.name) {
    case "loading":
      return html`<p class="loading">…</p>`;
    case "offline":
      return html`<main class="narrow"><${Title}>${t("offline_title")}<//><p>${t("offline_text")}</p>
        <button class="primary" onClick=${start}>${t("retry")}</button></main>`;
    case "first":
      return html`<${FirstRun} gateways=${phase.gateways} relanguage=${relanguage} done=${() => unlocked(language())} />`;
    case "unlock":
      return html`<${Unlock} done=${() => unlocked(null)} />`;
    case "stopped":
      return html`<main class="narrow"><${Title}>${t("stopped_title")}<//><p>${t("stopped_text")}</p>
        <button class="primary" onClick=${() => setPhase({ name: "unlock" })}>${t("unlock")}</button></main>`;
    default:
      return html`<${Main} lockSecs=${phase.lockSecs} lock=${lock} restart=${() => { lock(); start(); }}
        relanguage=${relanguage} setLockSecs=${(s) => setPhase((p) => ({ ...p, lockSecs: s }))}
        quit=${() => { lock(); setPhase({ name: "stopped" }); }} />`;
  }
}

/** Locks after `secs` without the user; while the user is there, keeps the app's key alive. */
function useLockTimer(secs, lock) {
  useEffect(() => {
    let timer = null;
    let lastTouch = Date.now();
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        api.call({ cmd: "lock" }, { activity: false }).catch(() => {});
        lock();
      }, secs * 1000);
    };
    const touched = () => {
      arm();
      // The app forgets a key after the same timeout without a user-initiated request; reading
      // or typing a long message sends none, so say once a minute that the user is here.
      if (Date.now() - lastTouch > 60000) {
        lastTouch = Date.now();
        api.call({ cmd: "settings" }).catch(() => {});
      }
    };
    // "qanat-activity": the page says the user is there without input (ui.js present()).
    const kinds = ["keydown", "pointerdown", "wheel", "touchstart", "qanat-activity"];
    kinds.forEach((k) => window.addEventListener(k, touched, { passive: true }));
    arm();
    return () => {
      clearTimeout(timer);
      kinds.forEach((k) => window.removeEventListener(k, touched));
    };
  }, [secs]);
}

function Main({ lockSecs, lock, restart, relanguage, setLockSecs, quit }) {
  const [threads, setThreads] = useState(null);
  const [invitations, setInvitations] = useState([]);
  const [view, setView] = useState({ name: "list" });
  const [linked, setLinked] = useState(true); // whether the event stream is up
  const ticks = useRef(new Map()); // message id -> highest delivery rank seen: ticks only move forward
  const listeners = useRef(new Set());
  const viewRef = useRef(view);
  viewRef.current = view;
  useLockTimer(lockSecs, lock);

  const refresh = async () => {
    try {
      const [c, g] = await Promise.all([
        api.call({ cmd: "contacts" }, { activity: false }),
        api.call({ cmd: "group_invitations" }, { activity: false }),
      ]);
      if (c.kind === "threads") setThreads(c.list);
      if (g.kind === "group_invitations") setInvitations(g.list);
    } catch {
      /* locked, or the app is gone: the stream's reconnection or the lock screen follows */
    }
  };
  const soon = useRef(null);
  const refreshSoon = () => {
    clearTimeout(soon.current);
    soon.current = setTimeout(refresh, 250);
  };

  /** Records `state` for message `id`; true if that moved its tick forward. */
  const bump = (id, state) => {
    const r = RANK[state];
    if (r === undefined || (ticks.current.get(id) ?? -1) >= r) return false;
    ticks.current.set(id, r);
    return true;
  };

  useEffect(() => {
    refresh();
    const stop = api.events(
      (ev) => {
        const open = viewRef.current.name === "chat" ? viewRef.current.thread : null;
        switch (ev.type) {
          case "message":
            announce(t("announce_message", { name: ev.thread }));
            refreshSoon();
            break;
          case "delivery":
            if (bump(ev.id, ev.state) && open) announce(t(`announce_${ev.state}`));
            break;
          case "contact_ready":
            announce(t("announce_contact_ready", { name: ev.name }));
            refreshSoon();
            break;
          case "group_invitation":
            announce(t("announce_group_invitation", { name: ev.from, group: ev.group }));
            refreshSoon();
            break;
          case "invitation_refused":
          case "invitation_expired":
            announce(t(`announce_${ev.type}`, { name: ev.name }));
            refreshSoon();
            break;
          case "transfer":
            // Once a second per transfer while it moves: the open conversation follows it (below);
            // the list only needs the end.
            if (ev.state === "received" && ev.direction === "in") announce(t("announce_file_received", { name: ev.thread }));
            if (ev.state === "failed") announce(t("announce_file_failed", { name: ev.thread }));
            if (["received", "sent", "cancelled", "failed"].includes(ev.state)) refreshSoon();
            break;
          case "profile_changed":
            restart();
            return;
          default:
            refreshSoon();
        }
        listeners.current.forEach((f) => f(ev));
      },
      () => {
        refreshSoon();
        listeners.current.forEach((f) => f({ type: "resync" }));
      },
      setLinked,
    );
    return () => {
      stop();
      clearTimeout(soon.current);
    };
  }, []);

  // Esc closes the open conversation or form (not while a field holds text: that would lose it).
  useEffect(() => {
    const esc = (e) => {
      const a = document.activeElement;
      const typing = a && (a.tagName === "TEXTAREA" || a.tagName === "INPUT") && a.value;
      // A dialog takes its own Esc, as does a control that handled it (the recorder's discard).
      const dialog = document.querySelector("dialog[open]");
      if (e.key === "Escape" && !e.isComposing && !typing && !dialog && !e.defaultPrevented && viewRef.current.name !== "list") {
        // A conversation's details go back to it; anything else to the list.
        const v = viewRef.current;
        setView(v.name === "details" ? { name: "chat", thread: v.thread } : { name: "list" });
      }
    };
    window.addEventListener("keydown", esc);
    return () => window.removeEventListener("keydown", esc);
  }, []);

  const subscribe = (f) => {
    listeners.current.add(f);
    return () => listeners.current.delete(f);
  };
  const open = (thread) => setView({ name: "chat", thread });
  const back = () => setView({ name: "list" });
  const pressLock = () => {
    api.call({ cmd: "lock" }).catch(() => {});
    lock();
  };

  const current = threads?.find((x) => x.name === view.thread);
  let detail;
  if (view.name === "chat") {
    detail = html`<${Chat} key=${view.thread} name=${view.thread} thread=${current} ticks=${ticks.current}
      bump=${bump} subscribe=${subscribe} back=${back} refresh=${refreshSoon}
      details=${() => setView({ name: "details", thread: view.thread })} />`;
  } else if (view.name === "invite") {
    detail = html`<${Invite} back=${back} open=${open} refresh=${refresh} />`;
  } else if (view.name === "accept") {
    detail = html`<${Accept} back=${back} open=${open} refresh=${refresh} />`;
  } else if (view.name === "details" && current?.group) {
    detail = html`<${Group} key=${view.thread} name=${view.thread} thread=${current} threads=${threads}
      back=${() => open(view.thread)} refresh=${refresh} left=${() => open(view.thread)} />`;
  } else if (view.name === "details") {
    detail = html`<${Contact} key=${view.thread} name=${view.thread} thread=${current} back=${() => open(view.thread)} refresh=${refresh} />`;
  } else if (view.name === "new_group") {
    detail = html`<${NewGroup} back=${back} refresh=${refresh} made=${(name) => setView({ name: "details", thread: name })} />`;
  } else if (view.name === "group_invitation") {
    detail = html`<${GroupInvitation} inv=${invitations.find((i) => i.id === view.id)} back=${back} open=${open} refresh=${refresh} />`;
  } else if (view.name === "network") {
    detail = html`<${Network} back=${back} />`;
  } else if (view.name === "settings") {
    detail = html`<${Settings} back=${back} relanguage=${relanguage} setLockSecs=${setLockSecs} quit=${quit} wiped=${restart} />`;
  } else {
    detail = html`<div class="empty"><p>${t("choose_conversation")}</p></div>`;
  }
  const listIsScreen = view.name === "list";
  return html`<div class="shell">
    <a class="skip" href="#detail">${t("skip_to_content")}</a>
    <header class="bar">
      <span class="brand">${t("app_name")}</span>
      ${!linked && html`<span class="offline" role="status">${t("reconnecting")}</span>`}
      <nav class="bar-actions" aria-label=${t("app_menu")}>
        <button class="quiet" aria-current=${view.name === "network" ? "page" : null} onClick=${() => setView({ name: "network" })}>${t("privacy")}</button>
        <button class="quiet" aria-current=${view.name === "settings" ? "page" : null} onClick=${() => setView({ name: "settings" })}>${t("settings")}</button>
        <button class="quiet" onClick=${pressLock}>${t("lock")}</button>
      </nav>
    </header>
    <div class=${`layout view-${view.name}`}>
      <nav class="side" aria-labelledby="list-title">
        <${List} threads=${threads} invitations=${invitations} current=${view.thread} open=${open}
          heading=${listIsScreen} refresh=${refresh}
          newContact=${() => setView({ name: "invite" })} accept=${() => setView({ name: "accept" })}
          newGroup=${() => setView({ name: "new_group" })} answer=${(id) => setView({ name: "group_invitation", id })} />
      </nav>
      <main class="detail" id="detail" tabindex="-1">${detail}</main>
    </div>
  </div>`;
}

const root = document.getElementById("app");
root.replaceChildren();
render(html`<${App} />`, root);
