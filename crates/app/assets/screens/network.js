// Network and privacy (APP.md §5): what the client does now (polled every 5 s while shown),
// then in plain words what it hides and what it does not, with this network's numbers and the
// figures measured by `qanat eval` (docs/eval/summary.json, embedded by the app and served as
// /assets/eval/summary.json; crates/app/tests/eval_summary.rs checks them against
// docs/EVALUATION.md).

import { useState, useEffect } from "../vendor/htm-preact.js";
import * as api from "../api.js";
import { t, number, megabytes, duration, fullTime } from "../i18n.js";
import { html, Title } from "../ui.js";

const POLL_MS = 5000;

async function loadSummary() {
  try {
    const r = await fetch("/assets/eval/summary.json", { cache: "no-store" });
    return r.ok ? await r.json() : null;
  } catch {
    return null;
  }
}

function Fact({ label, children }) {
  return html`<div class="fact"><dt>${label}</dt><dd>${children}</dd></div>`;
}

export function Network({ back }) {
  const [net, setNet] = useState(null);
  const [figures, setFigures] = useState(null);

  useEffect(() => {
    let timer;
    let stopped = false;
    const poll = async () => {
      try {
        const n = await api.call({ cmd: "network" }, { activity: false });
        if (n.kind === "network" && !stopped) setNet(n);
      } catch {
        return; // locked or gone: the page shows that
      }
      if (!stopped) timer = setTimeout(poll, POLL_MS);
    };
    poll();
    loadSummary().then((s) => !stopped && setFigures(s));
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, []);

  const link = net && net.link;
  const profile = net ? net[net.traffic] : null;
  const rate = profile ? profile.rates.reduce((a, b) => a + b, 0) : 0;
  const dash = "—";
  return html`<section class="form-screen wide" aria-labelledby="network-title">
    <button class="back" onClick=${back}><span class="flip" aria-hidden="true">←</span><span class="visually-hidden">${t("back_to_list")}</span></button>
    <${Title} id="network-title">${t("network_title")}<//>
    <h2>${t("network_now")}</h2>
    ${net === null
      ? html`<p class="hint">${t("loading")}</p>`
      : html`<dl class="facts">
          <${Fact} label=${t("network_connection")}>
            <span class=${link && link.connected ? "ok" : "problem"}>${link && link.connected ? t("connected") : t("not_connected")}</span>
          <//>
          <${Fact} label=${t("network_directory")}>${net.directory_epoch != null ? t("epoch", { epoch: number(net.directory_epoch) }) : t("measuring")}<//>
          <${Fact} label=${t("network_packets")}>${t("packets_sent", { real: number(net.sent[0]), acks: number(net.sent[1]), cover: number(net.sent[2]) })}<//>
          <${Fact} label=${t("network_today")}>${link
            ? t("today_bytes", { up: megabytes(link.today[0]), down: megabytes(link.today[1]), time: link.today_since_ms ? fullTime(link.today_since_ms) : dash })
            : dash}<//>
          <${Fact} label=${t("traffic_profile")}>${t(`traffic_${net.traffic}`)}<//>
          ${["standard", "metered"].map((p) => html`<${Fact} key=${p} label=${t("cost_of", { profile: t(`traffic_${p}`) })}>${net[p]
            ? t("traffic_cost", { up: megabytes(net[p].bytes_per_day[0]), down: megabytes(net[p].bytes_per_day[1]), delay: duration(net[p].expected_delay_ms) })
            : t("measuring")}<//>`)}
        </dl>`}

    <h2>${t("hidden_title")}</h2>
    <ul class="plain">
      <li>${t("hidden_content")}</li>
      <li>${rate > 0 ? t("hidden_pace", { seconds: number(1 / rate, { maximumFractionDigits: 1 }) }) : t("hidden_pace_unknown")}</li>
      ${net && net.layers && net.mean_delay_ms != null && html`<li>${t("hidden_mixes", { count: net.layers, delay: duration(net.mean_delay_ms) })}</li>`}
      ${figures && html`<li>${t("hidden_measured", {
        clients: number(figures.clients),
        percent: number(figures.global_observer.top_guess_percent),
        chance: number(100 / figures.clients, { maximumFractionDigits: 1 }),
      })}</li>`}
    </ul>

    <h2>${t("not_hidden_title")}</h2>
    <ul class="plain">
      <li>${t("not_hidden_online")}</li>
      <li>${t("not_hidden_ip")}</li>
      <li>${t("not_hidden_profile")}</li>
      ${figures && html`<li>${t("not_hidden_gateway", {
        percent: number(figures.every_gateway.named_percent),
        chance: number(figures.every_gateway.chance_percent),
      })}</li>`}
      <li>${t("not_hidden_contacts")}</li>
      <li>${t("not_hidden_device")}</li>
    </ul>
    ${figures && html`<p class="hint">${t("figures_source", { clients: number(figures.clients) })}</p>`}
  </section>`;
}
