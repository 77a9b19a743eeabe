//! The page's word catalogues (`assets/i18n/*.json`, docs/APP.md §5): every language has
//! English's keys, the same placeholders and its own CLDR plural categories; every key the page
//! asks for exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The languages and their CLDR cardinal plural categories (what `Intl.PluralRules` selects).
const LANGUAGES: [(&str, &[&str]); 3] = [
    ("en", &["one", "other"]),
    ("fr", &["one", "many", "other"]),
    ("ar", &["zero", "one", "two", "few", "many", "other"]),
];

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets")
}

fn catalogue(lang: &str) -> Map<String, Value> {
    let path = assets().join("i18n").join(format!("{lang}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match serde_json::from_str(&text) {
        Ok(Value::Object(m)) => m,
        other => panic!("{lang}.json is not an object: {other:?}"),
    }
}

/// The `{name}` placeholders of a text.
fn placeholders(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        if let Some(close) = rest.find('}') {
            let name = &rest[..close];
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                out.insert(name.to_owned());
            }
            rest = &rest[close + 1..];
        }
    }
    out
}

/// An entry's texts (one, or one per plural category) and their placeholders together.
fn texts(lang: &str, key: &str, v: &Value) -> Vec<(Option<String>, String)> {
    match v {
        Value::String(s) => vec![(None, s.clone())],
        Value::Object(m) => m
            .iter()
            .map(|(cat, s)| {
                let s = s.as_str().unwrap_or_else(|| panic!("{lang}.json {key}.{cat} is not text"));
                (Some(cat.clone()), s.to_owned())
            })
            .collect(),
        _ => panic!("{lang}.json {key} is neither text nor plural forms"),
    }
}

#[test]
fn every_language_has_english_keys_placeholders_and_its_plurals() {
    let en = catalogue("en");
    for (lang, categories) in LANGUAGES {
        let cat = catalogue(lang);
        let keys: BTreeSet<&String> = cat.keys().collect();
        let want: BTreeSet<&String> = en.keys().collect();
        assert_eq!(
            want.difference(&keys).collect::<Vec<_>>(),
            Vec::<&&String>::new(),
            "{lang}.json lacks these keys"
        );
        assert_eq!(
            keys.difference(&want).collect::<Vec<_>>(),
            Vec::<&&String>::new(),
            "{lang}.json has extra keys"
        );
        for (key, v) in &cat {
            let ours = texts(lang, key, v);
            let theirs = texts("en", key, &en[key]);
            let all = |t: &[(Option<String>, String)]| -> BTreeSet<String> {
                t.iter().flat_map(|(_, s)| placeholders(s)).collect()
            };
            assert_eq!(all(&ours), all(&theirs), "{lang}.json {key}: placeholders differ from en");
            assert_eq!(v.is_object(), en[key].is_object(), "{lang}.json {key}: plural in one language only");
            if v.is_object() {
                let have: BTreeSet<&str> = ours.iter().filter_map(|(c, _)| c.as_deref()).collect();
                let need: BTreeSet<&str> = categories.iter().copied().collect();
                assert_eq!(have, need, "{lang}.json {key}: plural categories");
                // The `other` form (what numbers outside the rules get) must say the number.
                let other = &ours.iter().find(|(c, _)| c.as_deref() == Some("other")).unwrap().1;
                assert!(other.contains("{count}"), "{lang}.json {key}.other does not show {{count}}");
            }
        }
    }
}

fn scripts(dir: &Path, out: &mut Vec<(String, String)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            if e.file_name() != "vendor" {
                scripts(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "js") {
            out.push((p.display().to_string(), std::fs::read_to_string(&p).unwrap()));
        }
    }
}

/// The keys given literally to `t("…")` or `tParts("…")`, and the fixed beginnings of those
/// built from a template (`` t(`traffic_${p}`) ``).
fn used_keys(js: &str) -> (Vec<String>, Vec<String>) {
    let (mut keys, mut prefixes) = (Vec::new(), Vec::new());
    for call in ["t(", "tParts("] {
        let mut from = 0;
        while let Some(i) = js[from..].find(call) {
            let at = from + i;
            from = at + call.len();
            // A whole name: `t(` not the end of `split(` or `at(`.
            if js[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                continue;
            }
            let rest = &js[from..];
            if let Some(r) = rest.strip_prefix('"') {
                keys.push(r[..r.find('"').unwrap()].to_owned());
            } else if let Some(r) = rest.strip_prefix('`') {
                let end = r.find('`').unwrap();
                let body = &r[..end];
                match body.find("${") {
                    Some(d) => prefixes.push(body[..d].to_owned()),
                    None => keys.push(body.to_owned()),
                }
            }
        }
    }
    (keys, prefixes)
}

#[test]
fn every_key_the_page_uses_exists_in_english() {
    let en = catalogue("en");
    let mut files = Vec::new();
    scripts(&assets(), &mut files);
    assert!(files.len() >= 5, "the page's scripts were not found");
    let mut seen = 0;
    for (path, js) in &files {
        let (keys, prefixes) = used_keys(js);
        for k in &keys {
            assert!(en.contains_key(k), "{path} uses t(\"{k}\"), which en.json lacks");
        }
        for p in &prefixes {
            assert!(
                en.keys().any(|k| k.starts_with(p.as_str())),
                "{path} builds keys from {p:?}: en.json has none"
            );
        }
        // Keys chosen from a table (`"strength_0"`, `"tick_sent"`): every string literal of
        // those families must be a key too.
        for family in ["strength_", "tick_", "error_", "announce_", "traffic_"] {
            let mut from = 0;
            while let Some(i) = js[from..].find(&format!("\"{family}")) {
                let start = from + i + 1;
                let end = start + js[start..].find('"').unwrap();
                from = end + 1;
                let k = &js[start..end];
                if k.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    && !k.ends_with('_')
                {
                    assert!(en.contains_key(k), "{path} names {k:?}, which en.json lacks");
                }
            }
        }
        seen += keys.len();
    }
    assert!(seen > 50, "only {seen} keys found: is the scan broken?");
}

#[test]
fn every_error_code_of_the_engine_has_words() {
    let en = catalogue("en");
    // EngineError::code() and the Host's codes (docs/APP.md §1.2).
    for code in [
        "unknown_name",
        "name_taken",
        "invalid_name",
        "not_ready",
        "no_network",
        "gateway_missing",
        "too_long",
        "invitation_invalid",
        "invitation_expired",
        "invitation_used",
        "invitation_own",
        "invitation_refused",
        "unknown_invitation",
        "not_member",
        "unknown_member",
        "refused",
        "profile",
        "wrong_passphrase",
        "busy",
        "invalid_setting",
        "member_needed",
        "not_current_code",
        "unknown_message",
        "wrong_kind",
        "profile_in_use",
        "locked",
        "no_profile",
        "profile_exists",
        "confirm",
        // Files (docs/ATTACHMENTS.md §3.13).
        "file_too_large",
        "file_not_ready",
        "no_such_file",
        "upload_unknown",
        "upload_out_of_order",
        "too_old_for_files",
    ] {
        assert!(en.contains_key(&format!("error_{code}")), "no words for error code {code}");
    }
}
