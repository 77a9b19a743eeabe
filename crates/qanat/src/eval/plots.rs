//! The evaluation's PNG plots (`OUT/eval/*.png`): entropy, linking and latency against a swept
//! setting, drawn with `plotters`' bitmap backend in a font read from a file (no system font
//! lookup).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use qanat_sim::Scores;

use super::Row;

/// Where the plots' font is looked for (Debian's `fonts-dejavu-core`), unless `QANAT_FONT` names
/// another TrueType file.
const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

pub(super) fn load_font() -> Result<&'static [u8]> {
    let path =
        std::env::var_os("QANAT_FONT").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_FONT));
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "reading the plot font {}: install Debian's fonts-dejavu-core, or set QANAT_FONT to a TrueType file",
            path.display()
        )
    })?;
    // The font registry of plotters keeps fonts for the life of the process.
    Ok(Box::leak(bytes.into_boxed_slice()))
}

/// One line: its name in the legend, its points, its colour.
type Series = (&'static str, Vec<(f64, f64)>, plotters::style::RGBColor);

/// What one plot shows against the swept setting: its y axis and its lines.
pub(super) struct Chart {
    y_label: &'static str,
    series: Vec<Series>,
}

/// Draws `chart` against the swept setting (`x_label`, on a log scale if `log_x`) into the PNG
/// at `path`.
pub(super) fn plot(path: &Path, title: &str, x_label: &str, chart: &Chart, log_x: bool) -> Result<()> {
    use plotters::prelude::*;
    let (y_label, series) = (chart.y_label, &chart.series);
    let pts = || series.iter().flat_map(|s| s.1.iter().copied());
    let (x0, x1) = pts().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| (a.min(x), b.max(x)));
    let y1 = pts().map(|p| p.1).filter(|y| y.is_finite()).fold(0.0f64, f64::max) * 1.1 + 1e-9;
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<_>| anyhow::anyhow!("plotting {}: {e:?}", path.display());
    root.fill(&WHITE).map_err(e)?;
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(y_label)
                .x_labels(8)
                .max_light_lines(1)
                .x_label_formatter(&fmt_tick)
                .draw()
                .map_err(e)?;
            for (name, points, color) in series {
                let c = *color;
                chart
                    .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
                    .map_err(e)?
                    .label(*name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
                chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, c.filled()))).map_err(e)?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::LowerRight)
                .draw()
                .map_err(e)?;
        }};
    }
    let mut builder = ChartBuilder::on(&root);
    builder.caption(title, ("sans-serif", 24)).margin(15).x_label_area_size(45).y_label_area_size(60);
    if log_x {
        draw!(builder.build_cartesian_2d((x0.max(1e-3)..x1).log_scale(), 0.0..y1).map_err(e)?);
    } else {
        let pad = (x1 - x0).abs() * 0.05 + 1e-9;
        draw!(builder.build_cartesian_2d((x0 - pad)..(x1 + pad), 0.0..y1).map_err(e)?);
    }
    root.present().map_err(e)?;
    Ok(())
}

pub(super) fn fmt_tick(x: &f64) -> String {
    let s = if x.abs() >= 10.0 { format!("{x:.0}") } else { format!("{x:.4}") };
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

/// One line of a plot: `y` of each row's scores, against the row's swept setting.
fn line(rows: &[(f64, Row)], y: impl Fn(&Scores) -> f64) -> Vec<(f64, f64)> {
    rows.iter().map(|(x, r)| (*x, y(&r.scores))).collect()
}

/// Sender entropy: mean, 5th percentile, against an adversary running every gateway, and the
/// most there is (`max`: log2 of the clients).
pub(super) fn entropy(rows: &[(f64, Row)], max: f64) -> Chart {
    use plotters::style::{BLACK, BLUE, GREEN, RED};
    Chart {
        y_label: "entropy of the sender (bits)",
        series: vec![
            ("mean", line(rows, |s| s.entropy.mean), BLUE),
            ("5th percentile", line(rows, |s| s.entropy.p5), RED),
            ("mean, adversary running every gateway", line(rows, |s| s.all_gateways.entropy.mean), GREEN),
            ("log2(clients)", line(rows, |_| max), BLACK),
        ],
    }
}

/// Messages whose sender and recipient are linked, by each adversary, and by chance.
pub(super) fn linking(rows: &[(f64, Row)]) -> Chart {
    use plotters::style::{BLACK, BLUE, GREEN, RED};
    let percent = |f: fn(&Scores) -> f64| line(rows, move |s| 100.0 * f(s));
    Chart {
        y_label: "messages whose sender and recipient are named (%)",
        series: vec![
            ("every gateway", percent(|s| s.all_gateways.top_correct), GREEN),
            ("gateway 0 (its own recipients)", percent(|s| s.one_gateway.top_correct), RED),
            ("global observer", percent(|s| s.pair_linked), BLUE),
            ("chance, recipient known: 1/(N − 1)", percent(|s| s.all_gateways.chance), BLACK),
        ],
    }
}

/// Latency, median and 99th percentile.
pub(super) fn latency(rows: &[(f64, Row)]) -> Chart {
    use plotters::style::{BLUE, RED};
    Chart {
        y_label: "queued → in the mailbox (s)",
        series: vec![
            ("p50", line(rows, |s| s.latency.p50), BLUE),
            ("p99", line(rows, |s| s.latency.p99), RED),
        ],
    }
}
