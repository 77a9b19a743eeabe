//! `qanat eval`: runs the global-passive-adversary experiments of `qanat-sim` and writes
//! `EVALUATION.md` with its tables and PNG plots (under `eval/`) into the output directory, and
//! `eval/summary.json`, the figures the app's privacy panel states.
//!
//! Here the settings, the sanity checks of the adversary, the sweeps and the unobservability test,
//! run in that order by [`eval`] (and one setting alone by [`one_setting`]); `plots.rs` draws the
//! PNG plots, `report.rs` writes the report's text (its closing notes are `notes.md`).

mod fast;
mod plots;
mod report;

pub(crate) use fast::fast_transfer;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use qanat_packet::Scheme;
use qanat_pki::Parameters;
use qanat_sim::stats::ks_two_sample;
use qanat_sim::timing::{Sender, inter_departures};
use qanat_sim::{Config, Scores, evaluate};

use self::plots::{entropy, latency, linking, load_font, plot};
use self::report::{gateway_table, report, scores_table, setting_line, summary};

/// What `qanat eval` was asked for.
pub(crate) struct EvalOptions {
    /// The report's directory (`EVALUATION.md` and `eval/*.png`).
    pub(crate) out: PathBuf,
    /// Small populations and short runs (about a minute).
    pub(crate) quick: bool,
    /// The seed of every run (each run adds its own offset).
    pub(crate) seed: u64,
}

/// One named setting and its figures.
struct Row {
    name: &'static str,
    what: String,
    flags: String,
    config: Config,
    scores: Scores,
}

/// The sizes of a full or a quick evaluation.
struct Scale {
    clients: u32,
    warmup: Duration,
    duration: Duration,
    sweep_duration: Duration,
    tail: Duration,
    timing_packets: usize,
    delays_ms: Vec<u64>,
    cover_rates: Vec<f64>,
}

impl Scale {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                clients: 16,
                warmup: Duration::from_secs(20),
                duration: Duration::from_secs(120),
                sweep_duration: Duration::from_secs(60),
                tail: Duration::from_secs(30),
                timing_packets: 2_000,
                delays_ms: vec![100, 500, 1000],
                cover_rates: vec![0.0, 0.05, 0.2],
            }
        } else {
            Self {
                clients: 50,
                warmup: Duration::from_secs(60),
                duration: Duration::from_secs(600),
                sweep_duration: Duration::from_secs(300),
                tail: Duration::from_secs(60),
                timing_packets: 10_000,
                delays_ms: vec![50, 100, 200, 500, 750, 1000, 2000],
                cover_rates: vec![0.0, 0.025, 0.05, 0.1, 0.2],
            }
        }
    }
}

/// The default setting: the directory's parameters, every client writing one message per 50 s.
fn base_config(scale: &Scale, params: &Parameters, seed: u64) -> Config {
    let mut c = Config::from_parameters(params, scale.clients, seed);
    c.warmup = scale.warmup;
    c.duration = scale.duration;
    c.tail = scale.tail;
    c.message_rate = 0.02;
    c
}

/// `qanat eval --setting`: one setting, the default one changed by the options.
pub(crate) struct SettingOptions {
    /// The sizes of `--quick`.
    pub(crate) quick: bool,
    /// The run's seed.
    pub(crate) seed: u64,
    /// Clients (all writing).
    pub(crate) clients: Option<u32>,
    /// Mean delay per hop, ms.
    pub(crate) mean_delay_ms: Option<u64>,
    /// λ_M per mix.
    pub(crate) lambda_m: Option<f64>,
    /// λ_P, λ_L, λ_D.
    pub(crate) lambda: [Option<f64>; 3],
    /// Every client on the metered profile.
    pub(crate) metered: bool,
    /// Messages per second per client.
    pub(crate) message_rate: Option<f64>,
    /// Clients send no cover.
    pub(crate) no_client_cover: bool,
    /// One layer of one mix.
    pub(crate) one_mix: bool,
    /// Mean delay before each acknowledgement, ms.
    pub(crate) ack_delay_ms: Option<u64>,
}

/// Runs one setting and prints its figures as a table.
pub(crate) fn one_setting(o: &SettingOptions) -> Result<()> {
    let scale = Scale::new(o.quick);
    let params = Parameters::default_for(Scheme::X25519Nike);
    let mut c = base_config(&scale, &params, o.seed);
    if let Some(n) = o.clients {
        c.clients = n;
        c.active = n;
    }
    if let Some(ms) = o.mean_delay_ms {
        c.mean_delay = Duration::from_millis(ms);
    }
    if let Some(m) = o.lambda_m {
        c.mix_loop_rate = m;
    }
    if o.metered {
        c.rates = qanat_mixnet::sending::TrafficProfile::Metered.rates(&params);
    }
    let [p, l, d] = o.lambda;
    c.rates.payload = p.unwrap_or(c.rates.payload);
    c.rates.loops = l.unwrap_or(c.rates.loops);
    c.rates.drops = d.unwrap_or(c.rates.drops);
    if let Some(r) = o.message_rate {
        c.message_rate = r;
    }
    c.client_cover = !o.no_client_cover;
    if let Some(ms) = o.ack_delay_ms {
        c.ack_delay = Duration::from_millis(ms);
    }
    if o.one_mix {
        c = one_mix(c);
        if let Some(m) = o.lambda_m {
            c.mix_loop_rate = m;
        }
    }
    let scores = evaluate(&c)?;
    let row = Row { name: "setting", what: String::new(), flags: String::new(), config: c, scores };
    let mut out = String::new();
    let _ = writeln!(out, "{}\n", setting_line(&row.config));
    scores_table(&mut out, "setting", &[("this".into(), &row)]);
    let _ = writeln!(out);
    gateway_table(&mut out, std::slice::from_ref(&row));
    print!("{out}");
    Ok(())
}

/// `c` with one layer of one mix, λ_M raised where needed to keep 2 of its loops held.
fn one_mix(c: Config) -> Config {
    Config {
        layers: 1,
        mixes_per_layer: 1,
        mix_loop_rate: loop_rate_for(c.mean_delay, 1, c.mix_loop_rate),
        ..c
    }
}

/// The mix loop rate that keeps at least 2 mix loops held at each mix at mean delay `delay`
/// (never below `base`). A loop is held at the `L − 1` other layers' mixes only (it leaves its
/// own mix at once and ends there), so the floor is `(L − 1)·λ_M/μ`, not the directory's
/// `L·λ_M/μ`.
fn loop_rate_for(delay: Duration, layers: usize, base: f64) -> f64 {
    let d = delay.as_secs_f64();
    let held = layers.saturating_sub(1).max(1) as f64;
    if d <= 0.0 { base } else { base.max(2.0 / (held * d)) }
}

/// Runs the evaluation and writes the report.
pub(crate) fn eval(o: &EvalOptions) -> Result<()> {
    let started = Instant::now();
    let font = load_font()?;
    plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, font)
        .map_err(|_| anyhow::anyhow!("the plot font is not a usable TrueType font"))?;
    let scale = Scale::new(o.quick);
    let params = Parameters::default_for(Scheme::X25519Nike);
    let base = base_config(&scale, &params, o.seed);
    let q = if o.quick { " --quick" } else { "" };
    let seed_flag = if o.seed == 1 { String::new() } else { format!(" --seed {}", o.seed) };
    let cmd = format!("qanat eval{q}{seed_flag}");
    let run = |name: &'static str, what: String, flags: String, config: Config| -> Result<Row> {
        let t = Instant::now();
        let scores = evaluate(&config).with_context(|| format!("setting {name}"))?;
        eprintln!(
            "eval: {name} {what}: {} messages, entropy mean {:.2} bits, p(true) {:.3}, latency p50 {:.1} s; \
             all gateways: entropy {:.2}, links {:.1}% (recipient only {:.1}%), one gateway links {:.1}% ({:.0} s)",
            scores.delivered,
            scores.entropy.mean,
            scores.p_true.mean,
            scores.latency.p50,
            scores.all_gateways.entropy.mean,
            scores.all_gateways.top_correct * 100.0,
            scores.all_gateways_recipient_only.top_correct * 100.0,
            scores.one_gateway.top_correct * 100.0,
            t.elapsed().as_secs_f64()
        );
        Ok(Row { name, what, flags, config, scores })
    };

    // The settings.
    let mut settings = Vec::new();
    settings.push(run("default", "the directory's defaults".into(), String::new(), base.clone())?);
    let fast = Duration::from_millis(50);
    settings.push(run(
        "low-latency",
        "mean delay 50 ms, λ_M raised to 20/s (keeps (L−1)·λ_M/μ ≥ 2)".into(),
        "--mean-delay-ms 50 --lambda-m 20".into(),
        Config { mean_delay: fast, mix_loop_rate: 20.0, seed: o.seed + 1, ..base.clone() },
    )?);
    settings.push(run(
        "metered",
        "every client on the metered profile (a tenth of λ_P, λ_L, λ_D), one message per 200 s".into(),
        "--metered --message-rate 0.005".into(),
        Config {
            rates: qanat_mixnet::sending::TrafficProfile::Metered.rates(&params),
            message_rate: 0.005,
            seed: o.seed + 2,
            ..base.clone()
        },
    )?);
    settings.push(run(
        "no-client-cover",
        "clients send only real packets (no drops, no loops); mixes keep their loops".into(),
        "--no-client-cover".into(),
        Config { client_cover: false, seed: o.seed + 3, ..base.clone() },
    )?);
    settings.push(run(
        "ack-delay-60s",
        "recipients wait Exp(60 s) before queueing each acknowledgement (a candidate defence against the \
         acknowledgement-timing leak of the gateway adversaries; senders' resends wait correspondingly longer)"
            .into(),
        "--ack-delay-ms 60000".into(),
        Config { ack_delay: Duration::from_secs(60), seed: o.seed + 7, ..base.clone() },
    )?);

    // Sanity checks of the adversary.
    let mut sanity = Vec::new();
    let naked = run(
        "no-delay-no-cover",
        "mean delay 0, no cover at all (clients or mixes)".into(),
        "--mean-delay-ms 0 --lambda-m 0 --no-client-cover".into(),
        Config {
            mean_delay: Duration::ZERO,
            mix_loop_rate: 0.0,
            client_cover: false,
            seed: o.seed + 4,
            ..base.clone()
        },
    )?;
    sanity.push((
        "no delay and no cover: the true sender is the top guess for ≥ 95% of messages",
        naked.scores.top_correct >= 0.95,
        format!("{:.1}% (mean p(true) {:.3})", naked.scores.top_correct * 100.0, naked.scores.p_true.mean),
    ));
    let single = run(
        "single-client",
        "one client (it writes to itself), one message per 20 s".into(),
        "--clients 1 --message-rate 0.05".into(),
        Config { clients: 1, active: 1, message_rate: 0.05, seed: o.seed + 5, ..base.clone() },
    )?;
    sanity.push((
        "a single client: p(true sender) = 1 for every message",
        single.scores.p_true.min == 1.0 && single.scores.delivered > 0,
        format!("min p(true) {:.3} over {} messages", single.scores.p_true.min, single.scores.delivered),
    ));
    let d = &settings[0].scores;
    sanity.push((
        "defaults: mean entropy within 1 bit of log2(clients)",
        d.entropy.mean >= d.max_entropy - 1.0,
        format!("{:.2} bits of {:.2}", d.entropy.mean, d.max_entropy),
    ));
    sanity.push((
        "no delay and no cover: the adversary running every gateway links sender and recipient for ≥ 95% of messages",
        naked.scores.all_gateways.top_correct >= 0.95,
        format!("{:.1}%", naked.scores.all_gateways.top_correct * 100.0),
    ));
    let lone = run(
        "one-mix",
        "one layer of one mix, the only honest node on every route; λ_M raised to keep 2 of its loops held"
            .into(),
        "--one-mix".into(),
        Config { seed: o.seed + 6, ..one_mix(base.clone()) },
    )?;
    let (g, a) = (&lone.scores, &lone.scores.all_gateways);
    sanity.push((
        "one honest mix: the adversary running every gateway does no worse than the global observer (entropy, p(true), top guess)",
        a.entropy.mean <= g.entropy.mean + 1e-9 && a.p_true.mean >= g.p_true.mean && a.top_correct >= g.top_correct,
        format!(
            "entropy {:.2} vs {:.2} bits, p(true) {:.3} vs {:.3}, top guess {:.1}% vs {:.1}%",
            a.entropy.mean,
            g.entropy.mean,
            a.p_true.mean,
            g.p_true.mean,
            a.top_correct * 100.0,
            g.top_correct * 100.0
        ),
    ));
    settings.push(naked);
    settings.push(single);
    settings.push(lone);

    // Sweeps.
    let sweep_base = Config { duration: scale.sweep_duration, ..base.clone() };
    let mut by_delay = Vec::new();
    for (i, ms) in scale.delays_ms.iter().enumerate() {
        let delay = Duration::from_millis(*ms);
        let lm = loop_rate_for(delay, base.layers, base.mix_loop_rate);
        let c = Config {
            mean_delay: delay,
            mix_loop_rate: lm,
            seed: o.seed + 100 + i as u64,
            ..sweep_base.clone()
        };
        by_delay.push((*ms as f64, run("sweep-delay", format!("{ms} ms"), String::new(), c)?));
    }
    let mut by_cover = Vec::new();
    for (i, r) in scale.cover_rates.iter().enumerate() {
        let rates = qanat_mixnet::sending::Rates { loops: *r, drops: *r, ..base.rates };
        let c = Config { rates, seed: o.seed + 200 + i as u64, ..sweep_base.clone() };
        by_cover.push((*r, run("sweep-cover", format!("{r}/s"), String::new(), c)?));
    }

    // Unobservability.
    let timing_config = Config { seed: o.seed + 300, ..base.clone() };
    let mut timing = Vec::new();
    for (name, sender) in [("Qanat (payload slots)", Sender::Qanat), ("naive control", Sender::Naive)] {
        let idle = inter_departures(&timing_config, sender, false, scale.timing_packets)?;
        let busy = inter_departures(
            &Config { seed: timing_config.seed + 1, ..timing_config.clone() },
            sender,
            true,
            scale.timing_packets,
        )?;
        let t = ks_two_sample(&idle, &busy).context("empty timing sample")?;
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        eprintln!("eval: timing {name}: D {:.4}, p {:.3e}", t.statistic, t.p_value);
        timing.push((name, t, mean(&idle), mean(&busy)));
    }
    sanity.push((
        "unobservability: idle and busy Qanat clients not told apart (KS p > 0.01)",
        timing[0].1.p_value > 0.01,
        format!("D = {:.4}, p = {:.3}", timing[0].1.statistic, timing[0].1.p_value),
    ));
    sanity.push((
        "control: a naive sender's idle and busy timings are told apart (KS p < 10⁻⁶)",
        timing[1].1.p_value < 1e-6,
        format!("D = {:.4}, p = {:.1e}", timing[1].1.statistic, timing[1].1.p_value),
    ));

    // Plots and report.
    let plots = o.out.join("eval");
    std::fs::create_dir_all(&plots).with_context(|| format!("creating {}", plots.display()))?;
    let max_h = base.clients as f64;
    let delay = "mean delay per hop (ms)";
    let cover = "client loop rate = drop rate (packets/s)";
    let charts = [
        (
            "entropy_vs_delay",
            "Sender entropy against mean delay per hop",
            delay,
            entropy(&by_delay, max_h.log2()),
            true,
        ),
        (
            "linking_vs_delay",
            "Sender and recipient linked, against mean delay per hop",
            delay,
            linking(&by_delay),
            true,
        ),
        ("latency_vs_delay", "Latency against mean delay per hop", delay, latency(&by_delay), true),
        (
            "entropy_vs_cover",
            "Sender entropy against client cover rate",
            cover,
            entropy(&by_cover, max_h.log2()),
            false,
        ),
        ("latency_vs_cover", "Latency against client cover rate", cover, latency(&by_cover), false),
    ];
    for (file, title, x_label, chart, log_x) in &charts {
        plot(&plots.join(format!("{file}.png")), title, x_label, chart, *log_x)?;
    }
    let report =
        report(o, &cmd, &base, &settings, &sanity, &by_delay, &by_cover, &timing, &scale, started.elapsed());
    let path = o.out.join("EVALUATION.md");
    std::fs::write(&path, report).with_context(|| format!("writing {}", path.display()))?;
    // The figures the app's privacy panel states, beside the report (docs/eval/summary.json is
    // the committed copy the app embeds).
    let figures = plots.join("summary.json");
    std::fs::write(&figures, summary(o, &cmd, &base, &settings))
        .with_context(|| format!("writing {}", figures.display()))?;
    println!(
        "eval: wrote {} and {}/*.png in {:.0} s",
        path.display(),
        plots.display(),
        started.elapsed().as_secs_f64()
    );
    let failed: Vec<_> = sanity.iter().filter(|s| !s.1).map(|s| s.0).collect();
    for (what, ok, detail) in &sanity {
        println!("sanity: {} {what}: {detail}", if *ok { "PASS" } else { "FAIL" });
    }
    if !failed.is_empty() {
        bail!("{} sanity check(s) failed", failed.len());
    }
    Ok(())
}
