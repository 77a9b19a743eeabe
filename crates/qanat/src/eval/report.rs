//! The text of `EVALUATION.md`: how it is measured, the settings' tables (the global observer's
//! and the gateway adversaries'), the sweeps, the unobservability test, the sanity checks, and the
//! closing notes (`notes.md`, included at build time).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use qanat_pki::Parameters;
use qanat_sim::Config;
use qanat_sim::stats::KsTest;

use super::plots::fmt_tick;
use super::{EvalOptions, Row, Scale};

/// A client's bytes a day (up, down) at `rates` on the default network (X25519 KEM packets),
/// as the client computes it (`TrafficProfile::idle_bytes_per_day`).
fn bytes_per_day(rates: qanat_mixnet::sending::Rates) -> (f64, f64) {
    let scheme = qanat_node::config::DEFAULT_SCHEME;
    let mut c = qanat_pki::ParametersConfig::default_for(scheme);
    let micro = |r: f64| qanat_pki::Rate::from_micro_per_sec((r * 1e6).round().max(1.0) as u64);
    c.lambda_p = micro(rates.payload);
    c.lambda_l = micro(rates.loops);
    c.lambda_d = micro(rates.drops);
    let Ok(params) = Parameters::new(c) else { return (f64::NAN, f64::NAN) };
    let wire =
        qanat_link::FrameSize::for_packet_len(params.geometry().packet_len()).map_or(0, |f| f.wire_len());
    qanat_mixnet::sending::TrafficProfile::Standard.idle_bytes_per_day(&params, wire)
}

fn range(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::MAX, f64::min);
    let hi = v.iter().copied().fold(f64::MIN, f64::max);
    if v.is_empty() { "–".into() } else { format!("{lo:.1}–{hi:.1}") }
}

pub(super) fn setting_line(c: &Config) -> String {
    let n = |x: f64| fmt_tick(&x);
    format!(
        "{} client{} ({} writing {} msg/s each), {}×{} mixes, 1/μ = {} ms, λ_P = {}, λ_L = {}, λ_D = {}, λ_M = {}/s, client cover {}{}",
        c.clients,
        if c.clients == 1 { "" } else { "s" },
        c.active,
        n(c.message_rate),
        c.layers,
        c.mixes_per_layer,
        c.mean_delay.as_millis(),
        n(c.rates.payload),
        n(c.rates.loops),
        n(c.rates.drops),
        n(c.mix_loop_rate),
        if c.client_cover { "on" } else { "off" },
        if c.ack_delay.is_zero() {
            String::new()
        } else {
            format!(", acknowledgements after Exp({} s)", c.ack_delay.as_secs_f64())
        }
    )
}

pub(super) fn scores_table(out: &mut String, first: &str, rows: &[(String, &Row)]) {
    let _ = writeln!(
        out,
        "| {first} | messages | entropy mean / p5 / min (bits) | log2 N | p(true) mean | top guess right | λ/μ per mix (observed) | pool per mix (mix's own) | latency p50 / p99 (s) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for (label, r) in rows {
        let s = &r.scores;
        let _ = writeln!(
            out,
            "| {label} | {}/{} | {:.2} / {:.2} / {:.2} | {:.2} | {:.3} | {:.1}% | {} | {} | {:.1} / {:.1} |",
            s.delivered,
            s.messages,
            s.entropy.mean,
            s.entropy.p5,
            s.entropy.min,
            s.max_entropy,
            s.p_true.mean,
            s.top_correct * 100.0,
            range(&s.lambda_over_mu),
            range(&s.pool_size),
            s.latency.p50,
            s.latency.p99,
        );
    }
}

/// For each setting, how often each adversary names both ends of a message, against chance.
pub(super) fn gateway_table(out: &mut String, rows: &[Row]) {
    let _ = writeln!(
        out,
        "| setting | adversary | messages | entropy of the sender mean / p5 (bits) | p(true sender) mean | sender and recipient named | chance | × chance |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for r in rows {
        let s = &r.scores;
        let n = f64::from(r.config.clients);
        // The global observer sees the recipient's gateway only: chance names the sender among
        // the others and the recipient among that gateway's clients.
        let global_chance = 1.0 / (n - 1.0).max(1.0) * (r.config.gateways as f64 / n).min(1.0);
        let x = |rate: f64, chance: f64| {
            if chance > 0.0 { format!("{:.1}", rate / chance) } else { "–".into() }
        };
        let _ = writeln!(
            out,
            "| {} | global observer (links) | {} | {:.2} / {:.2} | {:.3} | {:.2}% | {:.2}% | {} |",
            r.name,
            s.delivered,
            s.entropy.mean,
            s.entropy.p5,
            s.p_true.mean,
            s.pair_linked * 100.0,
            global_chance * 100.0,
            x(s.pair_linked, global_chance)
        );
        for (who, l) in [
            ("gateway 0 (its recipients)", &s.one_gateway),
            ("every gateway, recipient only", &s.all_gateways_recipient_only),
            ("every gateway", &s.all_gateways),
        ] {
            let _ = writeln!(
                out,
                "| {} | {who} | {} | {:.2} / {:.2} | {:.3} | {:.1}% | {:.1}% | {} |",
                r.name,
                l.messages,
                l.entropy.mean,
                l.entropy.p5,
                l.p_true.mean,
                l.top_correct * 100.0,
                l.chance * 100.0,
                x(l.top_correct, l.chance)
            );
        }
    }
}

/// `x` as the report prints it with `places` decimals, so the summary's figures are the report's.
fn printed(x: f64, places: usize) -> f64 {
    format!("{x:.places$}").parse().unwrap_or(f64::NAN)
}

/// `eval/summary.json`: the figures the app's "network and privacy" panel states (docs/APP.md
/// §5), each as `EVALUATION.md` prints it. Version 1; the app embeds the committed copy
/// (`docs/eval/summary.json`) and a test checks it against the committed report.
pub(super) fn summary(o: &EvalOptions, cmd: &str, base: &Config, settings: &[Row]) -> String {
    let d = &settings[0].scores;
    let n = f64::from(base.clients);
    let global_chance = 1.0 / (n - 1.0).max(1.0) * (base.gateways as f64 / n).min(1.0);
    let v = serde_json::json!({
        "version": 1,
        "generated_by": cmd,
        "seed": o.seed,
        "quick": o.quick,
        "setting": settings[0].name,
        "clients": base.clients,
        "gateways": base.gateways,
        "layers": base.layers,
        "mean_delay_ms": base.mean_delay.as_millis() as u64,
        "global_observer": {
            "entropy_bits": printed(d.entropy.mean, 2),
            "max_entropy_bits": printed(d.max_entropy, 2),
            "top_guess_percent": printed(d.top_correct * 100.0, 1),
            "pair_named_percent": printed(d.pair_linked * 100.0, 2),
            "pair_chance_percent": printed(global_chance * 100.0, 2),
        },
        "one_gateway": {
            "named_percent": printed(d.one_gateway.top_correct * 100.0, 1),
            "chance_percent": printed(d.one_gateway.chance * 100.0, 1),
        },
        "every_gateway": {
            "named_percent": printed(d.all_gateways.top_correct * 100.0, 1),
            "chance_percent": printed(d.all_gateways.chance * 100.0, 1),
        },
    });
    let mut text = serde_json::to_string_pretty(&v).unwrap_or_default();
    text.push('\n');
    text
}

fn utc_date(t: SystemTime) -> String {
    // "YYYY-MM-DD HH:MM:SS" without the seconds.
    let full = crate::client_print::utc(qanat_pki::UnixMillis::from_system_time(t).as_millis());
    format!("{} UTC", full.get(..16).unwrap_or(&full))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{cpu}, {cores} cores")
}

#[allow(clippy::too_many_arguments)]
pub(super) fn report(
    o: &EvalOptions,
    cmd: &str,
    base: &Config,
    settings: &[Row],
    sanity: &[(&str, bool, String)],
    by_delay: &[(f64, Row)],
    by_cover: &[(f64, Row)],
    timing: &[(&str, KsTest, f64, f64)],
    scale: &Scale,
    took: Duration,
) -> String {
    let mut r = String::new();
    let w = &mut r;
    let _ = writeln!(w, "# Evaluation: what Qanat hides from a global passive adversary\n");
    let _ = writeln!(
        w,
        "Generated by `{cmd}` (seed {}) on {}, {}, in {:.0} s. Every figure below comes from that one command; \
         the same seed gives the same numbers on any machine (the simulation is deterministic).{}\n",
        o.seed,
        utc_date(SystemTime::now()),
        machine(),
        took.as_secs_f64(),
        if o.quick {
            " **This is a `--quick` run: small population, short runs; not the reference figures.**"
        } else {
            ""
        }
    );
    let _ = writeln!(w, "## How it is measured\n");
    let _ = writeln!(
        w,
        "`crates/sim` (`qanat-sim`) runs a network of the real node cores — `qanat_mixnet::Mix` (Sphinx unwrap, replay \
         filter, the sender-chosen exponential delay, loop cover at λ_M) and `qanat_mixnet::Gateway` — and simulated \
         clients made of the real sending layer (`qanat_mixnet::sending`: the Poisson `Schedule` of payload, loop and \
         drop slots, the `Outbox` with SURB acknowledgements and resends, `cover_packet`), on a discrete-event network \
         in simulated time with one seeded ChaCha20 RNG. Topology: {} layers of {} mixes, {} gateways, {} ms links. \
         Clients write to uniformly random other clients; each message is one DATA packet into the thread mailbox the \
         recipient keeps for the sender, acknowledged through its SURB in the recipient's next payload slot into the \
         sender's home mailbox, where the sender's loops also arrive; drops go to a random mailbox at a random gateway. \
         Runs: {} s of cover-only warm-up, {} s of messages ({} s in the sweeps), \
         {} s to drain. Simplified for these runs (the network can do otherwise, `qanat_sim::Links` and \
         `qanat_sim::Pulls`, off here so that a seed gives the run it always gave): links never lose packets and send \
         no link-level acknowledgements, the store is always durable, and a recipient takes each item the instant its \
         gateway stores it (with pulls on it takes it when its next fixed-size pull brings it, latencies grow by up to \
         a pull interval, and the RNG is drawn in another order); MLS is not run, one epoch key covers the run. Packets use X25519 Sphinx (timing does not depend on the scheme).\n",
        base.layers,
        base.mixes_per_layer,
        base.gateways,
        base.link_latency.as_millis(),
        scale.warmup.as_secs(),
        scale.duration.as_secs(),
        scale.sweep_duration.as_secs(),
        scale.tail.as_secs()
    );
    let _ = writeln!(
        w,
        "**What the adversary sees**: for every packet on every link (client→gateway, gateway→mix, mix→mix, \
         mix→gateway) its time and its two endpoints, nothing else (`qanat_sim::Observation`). **What it knows**: the \
         topology, that gateways forward at once, that each mix delays by Exp(μ), λ_M, the link latency \
         (`qanat_sim::Knowledge`). `qanat_sim::analyse` takes only these two, so it cannot see the ground truth. It \
         gives each client packet its sender with certainty, each packet leaving a gateway the packet that arrived at \
         that instant, and each packet leaving a mix at t the mixture of everything that entered that mix before, \
         weighted by the delay density μ·e^{{−μ(t−t_in)}}, plus the mix's own fresh loops weighted by λ_M (the standard \
         Poisson-mix approximation; it ignores that each input leaves once). For each message delivered into a mailbox, \
         the distribution of its packet on the last link, renormalised over clients, is the adversary's guess of the \
         sender: we report its Shannon entropy, the probability it gives the true sender, and how often the true \
         sender is its top guess. λ/μ per mix is the observed arrival rate times 1/μ; the mix's own mean pool size \
         (`MixMetrics::pool_packet_seconds` / time) is shown beside it (they differ by the loops that end at their mix \
         and by the last-hop packets still queued at the end). Latency is from queueing at the sender to arrival in \
         the recipient's mailbox (add the recipient's fetch interval for what a person sees).\n"
    );
    let _ = writeln!(w, "## Settings\n");
    let mut rows = Vec::new();
    for s in settings {
        rows.push((format!("**{}**", s.name), s));
    }
    scores_table(w, "setting", &rows);
    let d = &settings[0].scores;
    let short = d.max_entropy - d.entropy.mean;
    let _ = writeln!(
        w,
        "\n**Target of issue 11**: the global observer's mean sender entropy within 0.5 bit of log2 N at the default \
         cost. At the defaults (1/μ = {} ms, {:.0} MB a day up and {:.0} MB down per client) it is {:.2} of {:.2} bits, \
         {:.2} bits short: **{}**.\n",
        base.mean_delay.as_millis(),
        bytes_per_day(base.rates).0 / 1e6,
        bytes_per_day(base.rates).1 / 1e6,
        d.entropy.mean,
        d.max_entropy,
        short,
        if short <= 0.5 { "met" } else { "not met" }
    );
    let _ = writeln!(
        w,
        "| setting | parameters | reproduce (one setting; `{cmd}` reproduces all) |\n|---|---|---|"
    );
    for s in settings {
        let _ = writeln!(
            w,
            "| {} | {}; {} | `qanat eval --setting{q} --seed {}{}{}` |",
            s.name,
            s.what,
            setting_line(&s.config),
            s.config.seed,
            if s.flags.is_empty() { "" } else { " " },
            s.flags,
            q = if o.quick { " --quick" } else { "" },
        );
    }
    let _ = writeln!(w, "\n## Sanity checks of the adversary\n");
    let _ = writeln!(w, "| check | result | measured |\n|---|---|---|");
    for (what, ok, detail) in sanity {
        let _ = writeln!(w, "| {what} | {} | {detail} |", if *ok { "pass" } else { "**FAIL**" });
    }
    let _ = writeln!(w, "\n## Adversaries that run gateways\n");
    let _ = writeln!(
        w,
        "Two more adversaries watch every link as above and also run gateways (A1 with A3): *gateway 0* runs one of \
         the {} gateways, *every gateway* runs all of them (`qanat_sim::analyse_gateways`). Mailbox items are sealed \
         end to end, so what a gateway learns of a packet it takes from the last mix is the mailbox it lands in and \
         when (`qanat_sim::Stored`): which of its clients registered it, whether it is that client's *home* mailbox \
         (where its loops and the acknowledgements of what it sends arrive) or a *thread* mailbox (one per contact, \
         where messages arrive), or that nobody registered it (a drop). Its targets are the packets stored in thread \
         mailboxes — messages whose **recipient it therefore knows** — and it guesses each one's sender: the global \
         posterior without the recipient, then, for every candidate whose gateway it runs, the likelihood ratio of \
         the packets that reached the candidate's home mailbox after the message reached the recipient, each weighed \
         by the density of an acknowledgement's delay (an Exp(λ_P) wait for the recipient's next payload slot, then \
         the mix delays) and by how strongly the global analysis of that packet points at the recipient, against the \
         rate of loops and other acknowledgements the home mailbox receives (see the module documentation for the \
         formula). *Recipient only* is the same adversary without the home mailboxes' evidence. Naming the sender of \
         a message whose recipient it knows links two users who talk; chance is 1/(N − 1). The global observer knows \
         only the recipient's gateway (fetches are fixed-size pulls on a schedule), so its pair linking is its top \
         guess of the sender times a uniform guess among that gateway's clients, against a chance of \
         1/(N − 1) × gateways/N.\n",
        base.gateways
    );
    gateway_table(w, settings);
    let d = &settings[0].scores.all_gateways;
    let _ = writeln!(
        w,
        "\nAt the defaults the gateways together stored {} packets in home mailboxes (loops and acknowledgements, which \
         they cannot tell apart), {} in thread mailboxes (messages, resends included) and {} drops.\n",
        d.home, d.thread, d.drops
    );
    let _ = writeln!(w, "Against the mean delay (the sweep below; defaults otherwise):\n");
    let _ = writeln!(
        w,
        "| 1/μ | global: entropy / pair named | gateway 0: entropy / named | every gateway, recipient only: entropy / named | every gateway: entropy / named | chance (recipient known) |\n|---|---|---|---|---|---|"
    );
    for (ms, r) in by_delay {
        let s = &r.scores;
        let cell =
            |l: &qanat_sim::LinkScores| format!("{:.2} / {:.1}%", l.entropy.mean, l.top_correct * 100.0);
        let _ = writeln!(
            w,
            "| {ms} ms | {:.2} / {:.2}% | {} | {} | {} | {:.1}% |",
            s.entropy.mean,
            s.pair_linked * 100.0,
            cell(&s.one_gateway),
            cell(&s.all_gateways_recipient_only),
            cell(&s.all_gateways),
            s.all_gateways.chance * 100.0
        );
    }
    let _ = writeln!(w, "\n![sender and recipient linked against mean delay](eval/linking_vs_delay.png)");
    let _ = writeln!(w, "\n## Unobservability\n");
    let _ = writeln!(
        w,
        "One client's packet departure times on its link to the gateway (all an observer of that link sees), idle \
         (nothing to send) and busy (a real packet waiting for every payload slot), {} inter-departure times each; \
         two-sample Kolmogorov–Smirnov test (`qanat_sim::stats::ks_two_sample`, asymptotic p-value). The naive control \
         sends cover at the same total rate but each message at once, as it is written (at λ_P when busy): a sender \
         without payload slots.\n",
        scale.timing_packets
    );
    let _ = writeln!(
        w,
        "| sender | mean gap idle (s) | mean gap busy (s) | KS D | p-value |\n|---|---|---|---|---|"
    );
    for (name, t, mi, mb) in timing {
        let _ = writeln!(w, "| {name} | {mi:.3} | {mb:.3} | {:.4} | {:.3e} |", t.statistic, t.p_value);
    }
    let _ = writeln!(
        w,
        "\nA Qanat client's stream is the same three Poisson processes whether or not it has something to say (an empty \
         payload slot carries a drop), so the test finds nothing; the naive sender's busy stream is faster and is \
         found at once.\n"
    );
    let _ = writeln!(w, "## Entropy and latency against the mean delay\n");
    let _ = writeln!(
        w,
        "Defaults otherwise; λ_M is raised where needed to keep 2 mix loops held at every mix, (L−1)·λ_M/μ ≥ 2 \
         (see the notes on λ_M below). The delay costs the client nothing: at the default rates it sends and \
         receives {:.0} MB a day up and {:.0} MB down (`TrafficProfile::idle_bytes_per_day`, X25519 KEM frames) at \
         every delay.\n",
        bytes_per_day(base.rates).0 / 1e6,
        bytes_per_day(base.rates).1 / 1e6
    );
    let rows: Vec<_> =
        by_delay.iter().map(|(x, r)| (format!("{x} ms (λ_M {:.1})", r.config.mix_loop_rate), r)).collect();
    scores_table(w, "1/μ", &rows);
    let _ = writeln!(w, "\n![entropy against mean delay](eval/entropy_vs_delay.png)\n");
    let _ = writeln!(w, "![latency against mean delay](eval/latency_vs_delay.png)\n");
    let _ = writeln!(w, "## Entropy and latency against the client cover rate\n");
    let _ = writeln!(
        w,
        "λ_L = λ_D = x (the payload slots at λ_P stay, and carry drops when empty); defaults otherwise.\n"
    );
    let rows: Vec<_> = by_cover
        .iter()
        .map(|(x, r)| {
            let (up, down) = bytes_per_day(r.config.rates);
            (format!("{x}/s ({:.0} MB/day up, {:.0} down)", up / 1e6, down / 1e6), r)
        })
        .collect();
    scores_table(w, "λ_L = λ_D", &rows);
    let _ = writeln!(w, "\n![entropy against cover rate](eval/entropy_vs_cover.png)\n");
    let _ = writeln!(w, "![latency against cover rate](eval/latency_vs_cover.png)\n");
    r.push_str(include_str!("notes.md"));
    r
}
