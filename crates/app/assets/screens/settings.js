// Settings (APP.md §3, §5): traffic profile, lock timeout, language, passphrase, duress
// passphrase, panic wipe (after typing a word of the user's language), quit. Passphrase fields
// are emptied as soon as they are read and sent in request bodies only.

import { useState, useEffect } from "../vendor/htm-preact.js";
import * as api from "../api.js";
import { t, tParts, language, LANGUAGES, megabytes, duration } from "../i18n.js";
import { html, Title, Problem, refusal, announce } from "../ui.js";
import { useStrength, StrengthBar, STRONG } from "./first.js";

const NATIVE = { en: "English", fr: "Français", ar: "العربية" };
const LOCK_MINUTES = [1, 5, 15, 60];

/** Empties and returns the values of `names` in form `f`. */
function take(f, ...names) {
  return names.map((n) => {
    const v = f[n] ? f[n].value : "";
    if (f[n]) f[n].value = "";
    return v;
  });
}

/** A line that says a change was saved (announced), or the refusal. */
function useOutcome() {
  const [done, setDone] = useState("");
  const [problem, setProblem] = useState("");
  const outcome = (a, words) => {
    if (a && a.kind === "ok") {
      setProblem("");
      setDone(words);
      announce(words);
      return true;
    }
    setDone("");
    setProblem(refusal(a));
    return false;
  };
  const view = html`${done && html`<p class="done" role="status">${done}</p>`}<${Problem} text=${problem} />`;
  return { outcome, view, setProblem, clear: () => { setDone(""); setProblem(""); } };
}

export function Settings({ back, relanguage, setLockSecs, wiped, quit }) {
  const [s, setS] = useState(null);
  const [net, setNet] = useState(null);
  useEffect(() => {
    api.call({ cmd: "settings" }, { activity: false }).then((a) => a.kind === "settings" && setS(a), () => {});
    api.call({ cmd: "network" }, { activity: false }).then((a) => a.kind === "network" && setNet(a), () => {});
  }, []);
  return html`<section class="form-screen" aria-labelledby="settings-title">
    <button class="back" onClick=${back}><span class="flip" aria-hidden="true">←</span><span class="visually-hidden">${t("back_to_list")}</span></button>
    <${Title} id="settings-title">${t("settings")}<//>
    ${s === null
      ? html`<p class="hint">${t("loading")}</p>`
      : html`<${Traffic} current=${s.traffic} net=${net} />
        <${Interface} settings=${s} relanguage=${relanguage} setLockSecs=${setLockSecs} />`}
    <${ChangePassphrase} />
    <${Duress} />
    <${Wipe} wiped=${wiped} />
    <${Quit} quit=${quit} />
  </section>`;
}

function Traffic({ current, net }) {
  const [choice, setChoice] = useState(current);
  const o = useOutcome();
  const save = async (e) => {
    e.preventDefault();
    const a = await api.call({ cmd: "set_traffic", traffic: choice }).catch(() => null);
    o.outcome(a, t("saved"));
  };
  return html`<form class="panel" onSubmit=${save}>
    <h2>${t("traffic_profile")}</h2>
    <p class="hint">${t("traffic_text")}</p>
    <fieldset class="choices">
      <legend class="visually-hidden">${t("traffic_profile")}</legend>
      ${["standard", "metered"].map((p) => html`<label class="choice" key=${p}>
        <input type="radio" name="traffic" value=${p} checked=${choice === p} onChange=${() => setChoice(p)} />
        <span><strong>${t(`traffic_${p}`)}</strong> <span class="hint">${t(`traffic_${p}_hint`)}</span><br />
        ${net && net[p]
          ? t("traffic_cost", { up: megabytes(net[p].bytes_per_day[0]), down: megabytes(net[p].bytes_per_day[1]), delay: duration(net[p].expected_delay_ms) })
          : html`<span class="measuring">${t("measuring")}</span>`}</span></label>`)}
    </fieldset>
    <p class="hint">${t("traffic_seen")}</p>
    ${o.view}
    <div class="actions"><button class="primary" type="submit">${t("save")}</button></div>
  </form>`;
}

function Interface({ settings, relanguage, setLockSecs }) {
  const o = useOutcome();
  const save = async (e) => {
    e.preventDefault();
    const f = e.currentTarget.elements;
    const lang = f.language.value;
    const secs = Number(f.lock.value) * 60;
    const a = await api.call({ cmd: "set_settings", language: lang, lock_timeout_secs: secs }).catch(() => null);
    if (a && a.kind === "ok") {
      setLockSecs(secs);
      if (lang !== language()) await relanguage(lang);
    }
    o.outcome(a, t("saved"));
  };
  const minutes = Math.round((settings.lock_timeout_secs || 300) / 60);
  return html`<form class="panel" onSubmit=${save}>
    <h2>${t("interface")}</h2>
    <label for="lock">${t("lock_after")}</label>
    <select id="lock" name="lock" aria-describedby="lock-hint">
      ${LOCK_MINUTES.map((m) => html`<option value=${m} selected=${m === minutes}>${t("minutes", { count: m })}</option>`)}
    </select>
    <p id="lock-hint" class="hint">${t("lock_hint")}</p>
    <label for="language">${t("language")}</label>
    <select id="language" name="language">
      ${LANGUAGES.map((l) => html`<option value=${l} lang=${l} selected=${l === (settings.language || language())}>${NATIVE[l]}</option>`)}
    </select>
    ${o.view}
    <div class="actions"><button class="primary" type="submit">${t("save")}</button></div>
  </form>`;
}

function ChangePassphrase() {
  const strength = useStrength();
  const o = useOutcome();
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    const f = e.currentTarget.elements;
    o.clear();
    setBusy(true);
    const est = await strength.check(f.new_passphrase.value);
    if (!est || est.score < STRONG) {
      setBusy(false);
      return o.setProblem(est ? t("passphrase_weak") : t("error_offline"));
    }
    if (f.new_passphrase.value !== f.new_again.value) {
      setBusy(false);
      return o.setProblem(t("passphrase_differ"));
    }
    const [old, next, , duress] = take(f, "old_passphrase", "new_passphrase", "new_again", "keep_duress");
    strength.reset();
    const cmd = { cmd: "change_passphrase", old, new: next };
    if (duress) cmd.duress = duress;
    const a = await api.call(cmd).catch(() => null);
    setBusy(false);
    o.outcome(a, t("passphrase_changed"));
  };
  return html`<form class="panel" onSubmit=${submit} novalidate>
    <h2>${t("change_passphrase")}</h2>
    <label for="old_passphrase">${t("current_passphrase")}</label>
    <input id="old_passphrase" name="old_passphrase" type="password" autocomplete="off" spellcheck="false" autocapitalize="off" />
    <label for="new_passphrase">${t("new_passphrase")}</label>
    <input id="new_passphrase" name="new_passphrase" type="password" autocomplete="off" spellcheck="false" autocapitalize="off"
      aria-describedby="new-strength" onInput=${(e) => strength.typed(e.currentTarget.value)} />
    <${StrengthBar} id="new-strength" est=${strength.est} />
    <label for="new_again">${t("passphrase_again")}</label>
    <input id="new_again" name="new_again" type="password" autocomplete="off" spellcheck="false" autocapitalize="off" />
    <label for="keep_duress">${t("keep_duress")}</label>
    <input id="keep_duress" name="keep_duress" type="password" autocomplete="off" spellcheck="false" autocapitalize="off" aria-describedby="keep-duress-hint" />
    <p id="keep-duress-hint" class="hint">${t("keep_duress_hint")}</p>
    ${o.view}
    <div class="actions"><button class="primary" type="submit" disabled=${busy}>${busy ? t("working") : t("change_passphrase")}</button></div>
  </form>`;
}

function Duress() {
  const o = useOutcome();
  const [busy, setBusy] = useState(false);
  const send = async (e, remove) => {
    e.preventDefault();
    const f = e.currentTarget.form ? e.currentTarget.form.elements : e.currentTarget.elements;
    o.clear();
    if (!remove && f.duress.value !== f.duress_again.value) return o.setProblem(t("passphrase_differ"));
    if (!remove && !f.duress.value) return o.setProblem(t("duress_empty"));
    const [passphrase, duress] = take(f, "duress_current", "duress", "duress_again");
    const cmd = { cmd: "set_duress", passphrase };
    if (!remove) cmd.duress = duress;
    setBusy(true);
    const a = await api.call(cmd).catch(() => null);
    setBusy(false);
    o.outcome(a, remove ? t("duress_removed") : t("duress_set"));
  };
  return html`<form class="panel" onSubmit=${(e) => send(e, false)} novalidate>
    <h2>${t("duress_title")}</h2>
    <p>${t("duress_what")}</p>
    <p class="warning">${t("duress_limits")}</p>
    <p class="hint">${t("duress_settings")}</p>
    <label for="duress_current">${t("current_passphrase")}</label>
    <input id="duress_current" name="duress_current" type="password" autocomplete="off" spellcheck="false" autocapitalize="off" />
    <label for="duress">${t("duress_passphrase")}</label>
    <input id="duress" name="duress" type="password" autocomplete="off" spellcheck="false" autocapitalize="off" />
    <label for="duress_again">${t("passphrase_again")}</label>
    <input id="duress_again" name="duress_again" type="password" autocomplete="off" spellcheck="false" autocapitalize="off" />
    ${o.view}
    <div class="actions">
      <button class="primary" type="submit" disabled=${busy}>${t("duress_set_button")}</button>
      <button type="button" onClick=${(e) => send(e, true)} disabled=${busy}>${t("duress_remove_button")}</button>
    </div>
    <p class="hint">${t("duress_remove_hint")}</p>
  </form>`;
}

/** Whether the typed word is `word`: case, accents and Arabic vowel marks aside. */
function same(typed, word) {
  const plain = (s) => s.trim().normalize("NFD").replace(/[\u0300-\u036f\u064b-\u065f\u0670]/g, "").toLocaleLowerCase(language());
  return plain(typed) !== "" && plain(typed) === plain(word);
}

function Wipe({ wiped }) {
  const [typed, setTyped] = useState("");
  const [problem, setProblem] = useState("");
  const [busy, setBusy] = useState(false);
  const word = t("wipe_word");
  const ready = same(typed, word);
  const submit = async (e) => {
    e.preventDefault();
    if (!ready) return setProblem(t("wipe_type", { word }));
    setBusy(true);
    // The app's own word is "wipe" whatever the language: the user typed theirs.
    const a = await api.call({ cmd: "wipe", confirm: "wipe" }).catch(() => null);
    setBusy(false);
    if (!a || a.kind !== "ok") return setProblem(refusal(a));
    wiped();
  };
  return html`<form class="panel danger-zone" onSubmit=${submit} novalidate>
    <h2>${t("wipe_title")}</h2>
    <p>${t("wipe_what")}</p>
    <p class="warning">${t("wipe_limits")}</p>
    <label for="wipe-word">${tParts("wipe_type", { word: html`<strong><bdi>${word}</bdi></strong>` })}</label>
    <input id="wipe-word" name="word" autocomplete="off" spellcheck="false" autocapitalize="off" dir="auto"
      value=${typed} onInput=${(e) => setTyped(e.currentTarget.value)} />
    <${Problem} text=${problem} />
    <div class="actions"><button class="danger" type="submit" disabled=${!ready || busy}>${t("wipe_button")}</button></div>
  </form>`;
}

function Quit({ quit }) {
  const [problem, setProblem] = useState("");
  const press = async () => {
    const a = await api.call({ cmd: "quit" }).catch(() => null);
    if (!a || a.kind !== "ok") return setProblem(refusal(a));
    quit();
  };
  return html`<div class="panel">
    <h2>${t("quit_title")}</h2>
    <p>${t("quit_what")}</p>
    <${Problem} text=${problem} />
    <div class="actions"><button onClick=${press}>${t("quit")}</button></div>
  </div>`;
}
