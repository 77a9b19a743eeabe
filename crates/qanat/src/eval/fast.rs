//! `qanat eval --fast-transfer`: what a fast file shows an observer of the sender's link
//! (docs/ATTACHMENTS.md §3.10, docs/EVALUATION.md "Fast files").
//!
//! Each of `clients` clients runs the real sending schedule (`qanat_mixnet::sending::Schedule`)
//! at the directory's default rates for a day: a packet leaves in every slot, real or cover, so
//! what a link observer sees of a client is the times of its packets. One client sends a file
//! at some hour, hidden (its rates unchanged: the control) or fast (its payload rate ×`f` for the
//! file's time, as the engine does). The observer counts each client's packets in a sliding
//! window and raises an alarm past a threshold set so that an idle client trips it at most
//! once a day (measured on the idle clients). Reported: the share of runs in which the sender
//! was flagged during its file, how soon, and the false alarms per client-day.

use std::time::Duration;

use anyhow::Result;
use qanat_mixnet::UnixMicros;
use qanat_mixnet::sending::{Rates, Schedule};
use rand::SeedableRng as _;
use rand::rngs::StdRng;

/// One row of the table.
struct Case {
    name: &'static str,
    factor: f64,
    secs: u64,
}

/// The times (seconds) at which a client's packets leave over `day` seconds, its payload rate
/// multiplied by `factor` within `fast`.
fn departures(rates: Rates, day: u64, fast: Option<(u64, u64, f64)>, rng: &mut StdRng) -> Vec<f64> {
    let mut s = Schedule::new(rates);
    let mut out = Vec::new();
    let mut now = UnixMicros::ZERO;
    let mut fast_on = false;
    let end = UnixMicros::ZERO + Duration::from_secs(day);
    while now < end {
        let t = now.saturating_since(UnixMicros::ZERO).as_secs_f64();
        let want = fast.is_some_and(|(a, b, _)| t >= a as f64 && t < b as f64);
        if want != fast_on {
            fast_on = want;
            let f = fast.map_or(1.0, |x| x.2);
            s = Schedule::new(Rates { payload: rates.payload * if want { f } else { 1.0 }, ..rates });
        }
        for _ in s.poll(now, rng) {
            out.push(t);
        }
        let next = s.poll_timeout().unwrap_or(end);
        // Never step past a switch of the rate.
        let switch = fast.map(|(a, b, _)| if t < a as f64 { a } else { b });
        now = match switch {
            Some(w) if (w as f64) > t && UnixMicros::ZERO + Duration::from_secs(w) < next => {
                UnixMicros::ZERO + Duration::from_secs(w)
            }
            _ => next,
        };
    }
    out
}

/// The most packets in any window of `w` seconds starting at a whole `step`, per window start.
fn window_counts(times: &[f64], day: u64, w: u64, step: u64) -> Vec<(u64, usize)> {
    let mut out = Vec::new();
    let mut lo = 0;
    let mut hi = 0;
    let mut start = 0;
    while start + w <= day {
        while lo < times.len() && times[lo] < start as f64 {
            lo += 1;
        }
        while hi < times.len() && times[hi] < (start + w) as f64 {
            hi += 1;
        }
        out.push((start, hi - lo));
        start += step;
    }
    out
}

/// Runs the experiment and prints its table (Markdown).
pub(crate) fn fast_transfer(seed: u64, quick: bool) -> Result<()> {
    let rates = Rates { payload: 0.2, loops: 0.05, drops: 0.05 };
    let (clients, runs) = if quick { (10, 10) } else { (50, 40) };
    let day = 86_400u64;
    let (w, step) = (300u64, 60u64);
    let mut rng = StdRng::seed_from_u64(seed);
    // The threshold: from idle clients, the count an idle client passes at most once a day.
    let mut idle_max: Vec<usize> = Vec::new();
    for _ in 0..clients {
        let t = departures(rates, day, None, &mut rng);
        idle_max.extend(window_counts(&t, day, w, step).into_iter().map(|(_, c)| c));
    }
    idle_max.sort_unstable();
    let per_day = (day / step) as usize;
    // The (1 − 1/windows-per-day) quantile of one window's count.
    let threshold = idle_max[idle_max.len() - idle_max.len() / per_day - 1];
    let false_alarms = idle_max.iter().filter(|c| **c > threshold).count() as f64 / clients as f64;
    // Times of the estimate (docs/BENCHMARKS.md "Files"): hidden, and fast at twice the rate.
    let cases = [
        Case { name: "100 KB hidden (control)", factor: 1.0, secs: 534 },
        Case { name: "100 KB fast ×2", factor: 2.0, secs: 290 },
        Case { name: "1 MB hidden (control)", factor: 1.0, secs: 4021 },
        Case { name: "1 MB fast ×2", factor: 2.0, secs: 2040 },
    ];
    println!(
        "Link observer: alarm when a client's packets in {w} s exceed {threshold} (idle clients: {false_alarms:.2} alarms per client-day; {clients} clients, a day each, at λ_P = {}, λ_L = λ_D = {}/s)",
        rates.payload, rates.loops
    );
    println!();
    println!(
        "| file | runs | sender flagged during the file | median delay to the flag | false alarms (other clients, per client-day) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for c in &cases {
        let mut flagged = 0;
        let mut delays = Vec::new();
        for _ in 0..runs {
            let start = 3_600 + rng_u64(&mut rng) % (day - 7_200 - c.secs);
            let t = departures(rates, day, Some((start, start + c.secs, c.factor)), &mut rng);
            let hit = window_counts(&t, day, w, step)
                .into_iter()
                .find(|(s, n)| *n > threshold && *s + w > start && *s < start + c.secs);
            if let Some((s, _)) = hit {
                flagged += 1;
                delays.push((s + w).saturating_sub(start));
            }
        }
        delays.sort_unstable();
        let median = delays.get(delays.len() / 2).map_or("—".into(), |d| format!("{d} s"));
        println!(
            "| {} | {runs} | {:.0}% | {median} | {false_alarms:.2} |",
            c.name,
            100.0 * flagged as f64 / runs as f64
        );
    }
    Ok(())
}

fn rng_u64(rng: &mut StdRng) -> u64 {
    rand::Rng::next_u64(rng)
}
