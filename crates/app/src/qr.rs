//! The invitation link's QR code as an SVG path (docs/APP.md §4): the page draws it in
//! `<svg role="img">` with a 4-module margin, so no image endpoint, `data:` URL or markup
//! string is needed. Error correction level M (15% of the code may be damaged or covered).

use qrcode::{Color, EcLevel, QrCode};
use serde::Serialize;

/// A QR code: `size` modules a side, `path` the dark ones as SVG path data in module units
/// (`M{x} {y}h{run}v1h-{run}z` per run of dark modules in a row).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Qr {
    pub(crate) size: usize,
    pub(crate) path: String,
}

/// The code of `text`, or `None` if it does not fit in a QR code.
pub(crate) fn encode(text: &str) -> Option<Qr> {
    let code = QrCode::with_error_correction_level(text, EcLevel::M).ok()?;
    let size = code.width();
    let colors = code.to_colors();
    let mut path = String::new();
    for (y, row) in colors.chunks(size).enumerate() {
        let mut x = 0;
        while x < size {
            if row[x] == Color::Dark {
                let start = x;
                while x < size && row[x] == Color::Dark {
                    x += 1;
                }
                let run = x - start;
                path.push_str(&format!("M{start} {y}h{run}v1h-{run}z"));
            } else {
                x += 1;
            }
        }
    }
    Some(Qr { size, path })
}

/// The backend's `invitation` answer with `qr` (a terminal's text) replaced by [`Qr`] (or
/// `null`); any other answer as it is.
pub(crate) fn decorate(answer: Vec<u8>) -> Vec<u8> {
    let Ok(serde_json::Value::Object(mut v)) = serde_json::from_slice::<serde_json::Value>(&answer) else {
        return answer;
    };
    if v.get("kind").and_then(|k| k.as_str()) != Some("invitation") {
        return answer;
    }
    let qr = v.get("link").and_then(|l| l.as_str()).and_then(encode);
    v.insert("qr".into(), serde_json::to_value(qr).unwrap_or_default());
    serde_json::to_vec(&v).unwrap_or(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The modules a path paints, by filling its rectangles.
    fn paint(q: &Qr) -> Vec<bool> {
        let mut grid = vec![false; q.size * q.size];
        for run in q.path.split('z').filter(|s| !s.is_empty()) {
            let rest = run.strip_prefix('M').unwrap();
            let (xy, rest) = rest.split_once('h').unwrap();
            let (x, y) = xy.split_once(' ').unwrap();
            let (x, y): (usize, usize) = (x.parse().unwrap(), y.parse().unwrap());
            let (len, tail) = rest.split_once('v').unwrap();
            let len: usize = len.parse().unwrap();
            assert_eq!(tail, format!("1h-{len}"));
            for i in x..x + len {
                assert!(!grid[y * q.size + i], "painted twice");
                grid[y * q.size + i] = true;
            }
        }
        grid
    }

    #[test]
    fn the_path_paints_exactly_the_dark_modules() {
        let link = "qanat://invite/AQGk3f1Lr0Qm9yZWZ2F0ZXdheS0xOjEyNy4wLjAuMTo3MDAxOnB1YmxpY2tleQ";
        let q = encode(link).unwrap();
        let code = QrCode::with_error_correction_level(link, EcLevel::M).unwrap();
        assert_eq!(q.size, code.width());
        let want: Vec<bool> = code.to_colors().into_iter().map(|c| c == Color::Dark).collect();
        assert_eq!(paint(&q), want);
        // Only the path's own letters and digits: nothing that could be markup.
        assert!(q.path.chars().all(|c| "Mhvz- ".contains(c) || c.is_ascii_digit()));
    }

    #[test]
    fn an_invitation_answer_gets_the_code_and_others_stay_as_they_are() {
        let a = br#"{"kind":"invitation","link":"qanat://invite/x","qr":"x x","expires_at_ms":5}"#;
        let v: serde_json::Value = serde_json::from_slice(&decorate(a.to_vec())).unwrap();
        assert_eq!(v["qr"]["size"], 25); // version 2: 16 bytes are more than version 1 holds at level M
        assert!(v["qr"]["path"].as_str().unwrap().starts_with("M0 0h7"));
        assert_eq!(v["expires_at_ms"], 5);
        let other = br#"{"kind":"ok"}"#.to_vec();
        assert_eq!(decorate(other.clone()), other);
        assert_eq!(decorate(b"not json".to_vec()), b"not json");
        // Too long for any QR code: no code, the link still there.
        let long = format!(r#"{{"kind":"invitation","link":"{}","qr":""}}"#, "x".repeat(5000));
        let v: serde_json::Value = serde_json::from_slice(&decorate(long.into_bytes())).unwrap();
        assert!(v["qr"].is_null() && v["link"].as_str().unwrap().len() == 5000);
    }
}
