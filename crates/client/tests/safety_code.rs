//! The safety code against known answers that Rust did not produce: `tests/data/safety-code-v1.json`,
//! written by `tests/data/safety-code-v1.py` with Python's `hashlib` (run it to see them made).

use qanat_client::engine::safety::{LABEL, SafetyCode};
use serde_json::Value;

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "{s}");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn key(s: &str) -> [u8; 32] {
    unhex(s).try_into().unwrap()
}

#[test]
fn codes_match_the_vectors_of_an_independent_implementation() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/safety-code-v1.json"))
            .unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(file["label"].as_str().unwrap().as_bytes(), LABEL);
    let vectors = file["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 8);
    for v in vectors {
        let what = v["what"].as_str().unwrap();
        let conversation = unhex(v["conversation"].as_str().unwrap());
        let (a, b) = (key(v["a"].as_str().unwrap()), key(v["b"].as_str().unwrap()));
        let expected = v["code"].as_str().unwrap();
        let code = SafetyCode::new(&conversation, &a, &b).unwrap();
        assert_eq!(code.digits(), expected, "{what}");
        assert_eq!(SafetyCode::new(&conversation, &b, &a).unwrap(), code, "{what}: either order");
        // Each half is that of one key: the lower key's first.
        let (half_a, half_b) = (v["half_a"].as_str().unwrap(), v["half_b"].as_str().unwrap());
        let (low, high) = if a <= b { (half_a, half_b) } else { (half_b, half_a) };
        assert_eq!(format!("{low}{high}"), expected, "{what}");
        // As shown and as typed back.
        let groups: Vec<&str> = code.groups().collect();
        assert_eq!(groups.len(), 12);
        assert_eq!(groups.concat(), expected);
        assert_eq!(code.rows().join("\n").replace(['\n', ' '], ""), expected);
        assert_eq!(SafetyCode::parse(&code.rows().join("\n")), Some(code.clone()));
    }
}
