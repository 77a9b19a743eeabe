//! The stylesheet uses logical properties only (docs/APP.md §5): `margin-inline-start`, not
//! `margin-left`; `text-align: start`, not `left`. Arabic then mirrors by itself. A physical
//! property or value is refused unless it is in [`ALLOWED`], with its reason.

use std::path::Path;

/// Declarations allowed to name a physical side, each with why (none so far).
const ALLOWED: &[(&str, &str)] = &[
    // ("selector-or-property", "why it must be physical"),
];

/// Strips `/* … */` comments.
fn uncomment(css: &str) -> String {
    let mut out = String::new();
    let mut rest = css;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        rest = rest[i + 2..].split_once("*/").map_or("", |(_, r)| r);
    }
    out.push_str(rest);
    out
}

fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).filter(|w| !w.is_empty())
}

/// `(property, value)` of every declaration, and the selector it is under.
fn declarations(css: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut selector = String::new();
    let mut buf = String::new();
    for c in css.chars() {
        match c {
            '{' => {
                selector = buf.trim().to_owned();
                buf.clear();
            }
            ';' | '}' => {
                if let Some((p, v)) = buf.split_once(':')
                    && !p.trim().is_empty()
                    && !p.contains('@')
                {
                    out.push((selector.clone(), p.trim().to_owned(), v.trim().to_owned()));
                }
                buf.clear();
            }
            _ => buf.push(c),
        }
    }
    out
}

/// Whether a declaration names a physical side or dimension.
fn physical(prop: &str, value: &str) -> bool {
    let physical_prop = words(prop).any(|w| {
        w.split('-').any(|part| ["left", "right"].contains(&part))
            || ["float", "clear", "width", "height", "min-width", "max-width", "min-height", "max-height"]
                .contains(&w)
    });
    let physical_value = words(value).any(|w| ["left", "right"].contains(&w));
    // Four-value shorthands name the top, right, bottom and left sides.
    let four_sides = ["margin", "padding", "inset", "border-width", "border-radius"].contains(&prop)
        && value.split_whitespace().count() == 4;
    physical_prop || physical_value || four_sides
}

#[test]
fn the_stylesheet_names_no_physical_side() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/style.css");
    let css = uncomment(&std::fs::read_to_string(path).unwrap());
    let decls = declarations(&css);
    assert!(decls.len() > 50, "only {} declarations found: is the parser broken?", decls.len());
    let mut bad = Vec::new();
    for (selector, prop, value) in &decls {
        if ALLOWED.iter().any(|(what, _)| what == selector || what == prop) {
            continue;
        }
        if physical(prop, value) {
            bad.push(format!("{selector} {{ {prop}: {value} }}"));
        }
    }
    assert!(bad.is_empty(), "physical properties (use the logical ones):\n{}", bad.join("\n"));
}

#[test]
fn the_checks_catch_what_they_should() {
    let css = "a { margin-left: 1px; text-align: left; float: right; padding: 1px 2px 3px 4px; width: 3px; \
               inset-inline-start: 0; text-align: start; padding: 1px 2px; line-height: 1; border-inline-width: 1px }";
    let d = declarations(css);
    assert_eq!(d.len(), 10);
    let flagged: Vec<bool> = d.iter().map(|(_, p, v)| physical(p, v)).collect();
    assert_eq!(flagged, [true, true, true, true, true, false, false, false, false, false]);
    let d = declarations("@media (max-width: 10px) { a { inline-size: 1px } }");
    assert_eq!(d, vec![("a".to_owned(), "inline-size".to_owned(), "1px".to_owned())]);
}
