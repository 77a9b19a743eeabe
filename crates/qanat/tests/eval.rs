//! `qanat eval --quick` writes the report and its plots, and the adversary's sanity checks hold.

use std::process::Command;

#[test]
fn quick_eval_writes_the_report_and_plots_and_its_sanity_checks_pass() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_qanat"))
        .args(["eval", "--quick", "--out"])
        .arg(dir.path())
        .output()
        .expect("run qanat eval");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "eval failed:\n{stdout}\n{stderr}");
    assert_eq!(stdout.matches("sanity: PASS").count(), 7, "{stdout}");
    let report = std::fs::read_to_string(dir.path().join("EVALUATION.md")).unwrap();
    for needle in [
        "## Settings",
        "**default**",
        "## Sanity checks",
        "## Adversaries that run gateways",
        "| every gateway |",
        "## Unobservability",
        "eval/entropy_vs_delay.png",
    ] {
        assert!(report.contains(needle), "missing {needle:?} in:\n{report}");
    }
    assert!(!report.contains("FAIL"), "{report}");
    // The app's privacy panel's figures, as the report prints them.
    let summary = std::fs::read_to_string(dir.path().join("eval").join("summary.json")).unwrap();
    let s: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!((s["version"].as_u64(), s["quick"].as_bool()), (Some(1), Some(true)), "{summary}");
    let entropy = s["global_observer"]["entropy_bits"].as_f64().unwrap();
    let every = s["every_gateway"]["named_percent"].as_f64().unwrap();
    assert!(report.contains(&format!("| {entropy:.2} / ")), "{summary}");
    assert!(report.contains(&format!("| {every:.1}% |")), "{summary}");
    for png in
        ["entropy_vs_delay", "linking_vs_delay", "latency_vs_delay", "entropy_vs_cover", "latency_vs_cover"]
    {
        let bytes = std::fs::read(dir.path().join("eval").join(format!("{png}.png"))).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 5_000, "{png}.png");
    }
}

/// `qanat eval --fast-transfer --quick`: a fast file is seen by the link observer, a hidden one
/// only as often as any idle client trips the alarm.
#[test]
fn a_fast_file_shows_on_the_link_and_a_hidden_one_does_not() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qanat"))
        .args(["eval", "--fast-transfer", "--quick", "--seed", "3"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let flagged = |row: &str| -> u32 {
        let line =
            text.lines().find(|l| l.starts_with(&format!("| {row} "))).unwrap_or_else(|| panic!("{text}"));
        line.split('|').nth(3).unwrap().trim().trim_end_matches('%').parse().unwrap()
    };
    assert!(flagged("100 KB fast ×2") >= 70, "{text}");
    assert!(flagged("1 MB fast ×2") >= 90, "{text}");
    assert!(flagged("100 KB hidden (control)") <= 20, "{text}");
    assert!(flagged("1 MB hidden (control)") <= 30, "{text}");
}
