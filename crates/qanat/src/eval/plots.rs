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

type Series<'a> = (&'a str, Vec<(f64, f64)>, plotters::style::RGBColor);

fn plot(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
    log_x: bool,
) -> Result<()> {
    use plotters::prelude::*;
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

pub(super) fn plot_entropy(
    path: &Path,
    title: &str,
    x: &str,
    rows: &[(f64, Row)],
    max: f64,
    log_x: bool,
) -> Result<()> {
    use plotters::style::{BLACK, BLUE, GREEN, RED};
    let line = |f: fn(&Scores) -> f64| rows.iter().map(|(x, r)| (*x, f(&r.scores))).collect::<Vec<_>>();
    plot(
        path,
        title,
        x,
        "entropy of the sender (bits)",
        &[
            ("mean", line(|s| s.entropy.mean), BLUE),
            ("5th percentile", line(|s| s.entropy.p5), RED),
            ("mean, adversary running every gateway", line(|s| s.all_gateways.entropy.mean), GREEN),
            ("log2(clients)", rows.iter().map(|(x, _)| (*x, max)).collect(), BLACK),
        ],
        log_x,
    )
}

pub(super) fn plot_linking(
    path: &Path,
    title: &str,
    x: &str,
    rows: &[(f64, Row)],
    log_x: bool,
) -> Result<()> {
    use plotters::style::{BLACK, BLUE, GREEN, RED};
    let line =
        |f: fn(&Scores) -> f64| rows.iter().map(|(x, r)| (*x, 100.0 * f(&r.scores))).collect::<Vec<_>>();
    plot(
        path,
        title,
        x,
        "messages whose sender and recipient are named (%)",
        &[
            ("every gateway", line(|s| s.all_gateways.top_correct), GREEN),
            ("gateway 0 (its own recipients)", line(|s| s.one_gateway.top_correct), RED),
            ("global observer", line(|s| s.pair_linked), BLUE),
            ("chance, recipient known: 1/(N − 1)", line(|s| s.all_gateways.chance), BLACK),
        ],
        log_x,
    )
}

pub(super) fn plot_latency(
    path: &Path,
    title: &str,
    x: &str,
    rows: &[(f64, Row)],
    log_x: bool,
) -> Result<()> {
    use plotters::style::{BLUE, RED};
    let line = |f: fn(&Scores) -> f64| rows.iter().map(|(x, r)| (*x, f(&r.scores))).collect::<Vec<_>>();
    plot(
        path,
        title,
        x,
        "queued → in the mailbox (s)",
        &[("p50", line(|s| s.latency.p50), BLUE), ("p99", line(|s| s.latency.p99), RED)],
        log_x,
    )
}
