//! Statistics: Shannon entropy, summaries, the two-sample Kolmogorov–Smirnov test.

/// Shannon entropy in bits of a distribution given as probabilities (zeros ignored).
pub fn entropy_bits(probs: impl IntoIterator<Item = f64>) -> f64 {
    probs.into_iter().filter(|p| *p > 0.0).map(|p| -p * p.log2()).sum::<f64>().max(0.0)
}

/// Mean, 5th percentile (nearest rank), minimum and maximum of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    /// Values.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// 5th percentile.
    pub p5: f64,
    /// 50th percentile.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
}

/// The nearest-rank `q`-quantile of sorted values (`q` in [0, 1]).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Summary {
    /// Summarises `values` (NaN fields when empty).
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let mean = if n == 0 { f64::NAN } else { v.iter().sum::<f64>() / n as f64 };
        Self {
            n,
            mean,
            p5: quantile(&v, 0.05),
            p50: quantile(&v, 0.5),
            p99: quantile(&v, 0.99),
            min: v.first().copied().unwrap_or(f64::NAN),
            max: v.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// The outcome of a two-sample Kolmogorov–Smirnov test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KsTest {
    /// Sizes of the two samples.
    pub n: (usize, usize),
    /// The statistic D: the largest distance between the two empirical distribution functions.
    pub statistic: f64,
    /// The asymptotic p-value: the probability of a D at least this large if both samples come
    /// from one continuous distribution.
    pub p_value: f64,
}

/// The two-sample Kolmogorov–Smirnov test of `a` against `b` (non-finite values are ignored),
/// with the asymptotic p-value `Q_KS((√nₑ + 0.12 + 0.11/√nₑ)·D)`, `nₑ = n·m/(n+m)` (Stephens'
/// correction, as in Numerical Recipes' `kstwo`). `None` if a sample is empty.
pub fn ks_two_sample(a: &[f64], b: &[f64]) -> Option<KsTest> {
    let sorted = |s: &[f64]| {
        let mut v: Vec<f64> = s.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let (a, b) = (sorted(a), sorted(b));
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 {
        return None;
    }
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < n && j < m {
        let x = a[i].min(b[j]);
        while i < n && a[i] <= x {
            i += 1;
        }
        while j < m && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n as f64 - j as f64 / m as f64).abs());
    }
    let ne = (n as f64 * m as f64) / (n + m) as f64;
    let sq = ne.sqrt();
    Some(KsTest { n: (n, m), statistic: d, p_value: kolmogorov_q((sq + 0.12 + 0.11 / sq) * d) })
}

/// The Kolmogorov distribution's survival function `Q(λ) = 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²}`.
pub fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda < 0.2 {
        // The series converges slowly here and Q is 1 to 15 digits.
        return 1.0;
    }
    let mut sum = 0.0;
    let mut sign = 1.0;
    for k in 1..=200 {
        let k = f64::from(k);
        let term = sign * (-2.0 * k * k * lambda * lambda).exp();
        sum += term;
        if term.abs() < 1e-16 {
            break;
        }
        sign = -sign;
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_uniform_and_certain() {
        assert!((entropy_bits([0.25; 4]) - 2.0).abs() < 1e-12);
        assert_eq!(entropy_bits([1.0, 0.0]), 0.0);
    }

    #[test]
    fn kolmogorov_distribution_matches_tabulated_values() {
        // K(x) = 1 - Q(x): K(0.5) = 0.036055, K(1.0) = 0.730000, K(1.36) ≈ 0.95 (the 5% point).
        assert!((kolmogorov_q(0.5) - (1.0 - 0.036_055)).abs() < 1e-5);
        assert!((kolmogorov_q(1.0) - 0.270_000).abs() < 1e-5);
        assert!((kolmogorov_q(1.358_1) - 0.05).abs() < 1e-3);
    }

    #[test]
    fn ks_statistic_by_hand() {
        // a = {1,2,3}, b = {2.5, 4}: at x=2 F_a = 2/3, F_b = 0 → D = 2/3.
        let t = ks_two_sample(&[1.0, 2.0, 3.0], &[2.5, 4.0]).unwrap();
        assert!((t.statistic - 2.0 / 3.0).abs() < 1e-12);
        let same = ks_two_sample(&[1.0, 2.0], &[1.0, 2.0]).unwrap();
        assert_eq!(same.statistic, 0.0);
        assert_eq!(same.p_value, 1.0);
    }

    #[test]
    fn summary_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&v);
        assert_eq!((s.p5, s.p50, s.p99, s.min, s.max), (5.0, 50.0, 99.0, 1.0, 100.0));
        assert!((s.mean - 50.5).abs() < 1e-12);
    }
}
