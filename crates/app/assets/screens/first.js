// The first run (APP.md §5): 1 language, 2 passphrase twice, 3 traffic profile.
// The profile is created at the end of step 2 (with the standard profile, which the first
// seconds use anyway); step 3 asks the just-started client what each profile costs here.

import { useState, useEffect, useRef } from "../vendor/htm-preact.js";
import * as api from "../api.js";
import { t, language, LANGUAGES, megabytes, duration } from "../i18n.js";
import { html, Title, Problem, refusal } from "../ui.js";

const NATIVE = { en: "English", fr: "Français", ar: "العربية" };

export function FirstRun({ gateways, relanguage, done }) {
  const [step, setStep] = useState(1);
  if (step === 1) return html`<${Language} relanguage=${relanguage} next=${() => setStep(2)} />`;
  if (step === 2) return html`<${Passphrase} gateways=${gateways} back=${() => setStep(1)} next=${() => setStep(3)} />`;
  return html`<${Traffic} done=${done} />`;
}

function Steps({ n }) {
  return html`<p class="steps">${t("step_of", { step: n, total: 3 })}</p>`;
}

function Language({ relanguage, next }) {
  const choose = (e) => relanguage(e.currentTarget.value);
  return html`<main class="narrow">
    <${Steps} n=${1} />
    <${Title}>${t("welcome_title")}<//>
    <p>${t("welcome_text")}</p>
    <fieldset class="choices">
      <legend>${t("language")}</legend>
      ${LANGUAGES.map((l) => html`<label class="choice" lang=${l}>
        <input type="radio" name="language" value=${l} checked=${language() === l} onChange=${choose} />
        <span>${NATIVE[l]}</span></label>`)}
    </fieldset>
    <div class="actions"><button class="primary" onClick=${next}>${t("continue")}</button></div>
  </main>`;
}

const STRENGTH = ["strength_0", "strength_1", "strength_2", "strength_3", "strength_4"];

/**
 * A passphrase field's strength, asked from the app (POST /api/strength, zxcvbn) 300 ms after
 * the last keystroke. `check(value)` asks at once (before a submit) and returns the estimate.
 */
export function useStrength() {
  const [est, setEst] = useState(null);
  const timer = useRef(null);
  const asked = useRef(0);
  useEffect(() => () => clearTimeout(timer.current), []);
  const check = async (value) => {
    clearTimeout(timer.current);
    const n = ++asked.current;
    const e = value ? await api.strength(value) : { score: 0, warning: null, suggestions: [] };
    // A later keystroke's answer wins over an earlier one's.
    if (n === asked.current) setEst(e);
    return e;
  };
  const typed = (value) => {
    clearTimeout(timer.current);
    timer.current = setTimeout(() => check(value), 300);
  };
  const reset = () => {
    clearTimeout(timer.current);
    asked.current++;
    setEst(null);
  };
  return { est, typed, check, reset };
}

/** The strength bar and what zxcvbn says about the passphrase, in the user's words. */
export function StrengthBar({ id, est }) {
  const score = est ? est.score : 0;
  const advice = est ? [est.warning, ...(est.suggestions || [])].filter(Boolean) : [];
  return html`<div id=${id} class="strength-box" aria-live="polite">
    <div class="strength">
      <meter min="0" max="4" low="2" high="3" optimum="4" value=${score} aria-hidden="true"></meter>
      <span>${est ? t(STRENGTH[score]) : ""}</span>
    </div>
    ${advice.length > 0 && html`<ul class="advice">${advice.map((k) => html`<li key=${k}>${t(k)}</li>`)}</ul>`}
  </div>`;
}

/** The least score a passphrase needs (zxcvbn's 0..4). */
export const STRONG = 3;

function Passphrase({ gateways, back, next }) {
  const strength = useStrength();
  const [problem, setProblem] = useState("");
  const [busy, setBusy] = useState(false);

  const submit = async (e) => {
    e.preventDefault();
    const f = e.currentTarget.elements;
    const passphrase = f.passphrase.value;
    setBusy(true);
    const est = await strength.check(passphrase);
    if (!est) {
      setBusy(false);
      return setProblem(t("error_offline"));
    }
    if (est.score < STRONG) {
      setBusy(false);
      return setProblem(t("passphrase_weak"));
    }
    if (passphrase !== f.again.value) {
      setBusy(false);
      return setProblem(t("passphrase_differ"));
    }
    const cmd = { cmd: "create", passphrase, traffic: "standard", language: language() };
    if (f.gateway) cmd.gateway = f.gateway.value;
    f.passphrase.value = "";
    f.again.value = "";
    strength.reset();
    setProblem("");
    try {
      const a = await api.call(cmd);
      if (a.kind === "ok" && a.key) {
        api.setKey(a.key);
        return next();
      }
      setProblem(refusal(a));
    } catch {
      setProblem(t("error_offline"));
    }
    setBusy(false);
  };

  return html`<main class="narrow">
    <${Steps} n=${2} />
    <${Title}>${t("passphrase_title")}<//>
    <p>${t("passphrase_text")}</p>
    <form onSubmit=${submit} novalidate>
      <label for="passphrase">${t("passphrase")}</label>
      <input id="passphrase" name="passphrase" type="password" autocomplete="off" spellcheck="false"
        autocapitalize="off" aria-describedby="strength" onInput=${(e) => strength.typed(e.currentTarget.value)} />
      <${StrengthBar} id="strength" est=${strength.est} />
      <label for="again">${t("passphrase_again")}</label>
      <input id="again" name="again" type="password" autocomplete="off" spellcheck="false" autocapitalize="off" />
      ${gateways.length > 1 && html`
        <label for="gateway">${t("gateway")}</label>
        <select id="gateway" name="gateway">${gateways.map((g) => html`<option value=${g}>${g}</option>`)}</select>`}
      <${Problem} text=${problem} />
      <div class="actions">
        <button type="button" onClick=${back} disabled=${busy}>${t("back")}</button>
        <button class="primary" type="submit" disabled=${busy}>${busy ? t("creating") : t("create")}</button>
      </div>
    </form>
  </main>`;
}

function Cost({ cost }) {
  if (!cost) return html`<span class="measuring">${t("measuring")}</span>`;
  const [up, down] = cost.bytes_per_day;
  return html`<span>${t("traffic_cost", { up: megabytes(up), down: megabytes(down), delay: duration(cost.expected_delay_ms) })}</span>`;
}

function Traffic({ done }) {
  const [net, setNet] = useState(null);
  const [choice, setChoice] = useState("standard");
  const [problem, setProblem] = useState("");

  useEffect(() => {
    let timer;
    const poll = async () => {
      try {
        const n = await api.call({ cmd: "network" }, { activity: false });
        if (n.kind === "network") setNet(n);
        if (n.kind === "network" && n.standard && n.metered) return;
      } catch {
        return;
      }
      timer = setTimeout(poll, 2000);
    };
    poll();
    return () => clearTimeout(timer);
  }, []);

  const finish = async () => {
    if (choice !== "standard") {
      const a = await api.call({ cmd: "set_traffic", traffic: choice }).catch(() => null);
      if (!a || a.kind !== "ok") return setProblem(refusal(a));
    }
    done();
  };

  return html`<main class="narrow">
    <${Steps} n=${3} />
    <${Title}>${t("traffic_title")}<//>
    <p>${t("traffic_text")}</p>
    <fieldset class="choices">
      <legend>${t("traffic_profile")}</legend>
      ${["standard", "metered"].map((p) => html`<label class="choice">
        <input type="radio" name="traffic" value=${p} checked=${choice === p} onChange=${() => setChoice(p)} />
        <span><strong>${t(`traffic_${p}`)}</strong> <span class="hint">${t(`traffic_${p}_hint`)}</span><br />
        <${Cost} cost=${net && net[p]} /></span></label>`)}
    </fieldset>
    <p class="hint">${t("traffic_later")}</p>
    <${Problem} text=${problem} />
    <div class="actions"><button class="primary" onClick=${finish}>${t("finish")}</button></div>
  </main>`;
}
