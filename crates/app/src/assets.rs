//! The page's files, embedded in the binary: nothing is loaded from anywhere else, and no
//! JavaScript build step stands between the source and what the browser runs.

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";
const MARKDOWN: &str = "text/markdown; charset=utf-8";

macro_rules! files {
    ($(($name:literal, $type:expr)),* $(,)?) => {
        &[$(($name, $type, include_bytes!(concat!("../assets/", $name)))),*]
    };
}

/// Every file of `assets/` (subdirectories included): its name under `/assets/` (the page
/// itself is `index.html`, served at `/`), its content type, its bytes.
pub(crate) const FILES: &[(&str, &str, &[u8])] = files![
    ("index.html", HTML),
    ("app.js", JS),
    ("api.js", JS),
    ("i18n.js", JS),
    ("ui.js", JS),
    ("style.css", CSS),
    ("icon.svg", "image/svg+xml"),
    ("i18n/en.json", JSON),
    ("i18n/fr.json", JSON),
    ("i18n/ar.json", JSON),
    ("i18n/README.md", MARKDOWN),
    ("screens/first.js", JS),
    ("screens/unlock.js", JS),
    ("screens/list.js", JS),
    ("screens/chat.js", JS),
    ("screens/files.js", JS),
    ("screens/invite.js", JS),
    ("screens/accept.js", JS),
    ("screens/contact.js", JS),
    ("screens/groups.js", JS),
    ("screens/network.js", JS),
    ("screens/settings.js", JS),
    ("vendor/htm-preact.js", JS),
    ("vendor/LICENSE-htm", TEXT),
    ("vendor/LICENSE-preact", TEXT),
    ("vendor/README.md", MARKDOWN),
];

/// The figures the privacy panel states (docs/APP.md §5), as `qanat eval` last wrote them
/// beside `docs/EVALUATION.md` (`tests/eval_summary.rs` checks them against it); served as
/// `/assets/eval/summary.json`.
pub const EVAL_SUMMARY: &str = include_str!("../../../docs/eval/summary.json");

/// The file `name`: its content type and bytes.
pub(crate) fn get(name: &str) -> Option<(&'static str, &'static [u8])> {
    if name == "eval/summary.json" {
        return Some((JSON, EVAL_SUMMARY.as_bytes()));
    }
    FILES.iter().find(|(n, _, _)| *n == name).map(|(_, t, b)| (*t, *b))
}

/// The file `name` compressed with gzip, where that makes it smaller; every file is compressed
/// once, the first time one is asked for.
///
/// Only these files are ever compressed, never an answer of `/api/`: they hold no secret, so
/// what their compressed length shows (BREACH) is what anyone can read in this source.
pub(crate) fn gzipped(name: &str) -> Option<&'static [u8]> {
    use std::sync::OnceLock;
    static GZIPPED: OnceLock<Vec<(&'static str, Vec<u8>)>> = OnceLock::new();
    let all = GZIPPED.get_or_init(|| {
        let plain = FILES.iter().map(|(n, _, b)| (*n, *b));
        plain
            .chain(std::iter::once(("eval/summary.json", EVAL_SUMMARY.as_bytes())))
            .filter_map(|(n, b)| Some((n, gzip(b)?)).filter(|(_, z)| z.len() < b.len()))
            .collect()
    });
    all.iter().find(|(n, _)| *n == name).map(|(_, z)| z.as_slice())
}

fn gzip(bytes: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write as _;
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(bytes).ok()?;
    z.finish().ok()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = format!("{prefix}{}", e.file_name().into_string().unwrap());
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), &format!("{name}/"), out);
            } else {
                out.push(name);
            }
        }
    }

    #[test]
    fn every_file_of_the_directory_is_embedded_and_no_other() {
        let mut on_disk = Vec::new();
        walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("assets"), "", &mut on_disk);
        on_disk.sort();
        let mut table: Vec<String> = super::FILES.iter().map(|(n, _, _)| n.to_string()).collect();
        table.sort();
        assert_eq!(on_disk, table);
    }

    #[test]
    fn the_compressed_files_are_the_files() {
        use std::io::Read as _;
        let mut compressed = 0;
        for (name, _, bytes) in super::FILES {
            let Some(z) = super::gzipped(name) else { continue };
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(z).read_to_end(&mut plain).unwrap();
            assert_eq!(&plain, bytes, "{name}");
            assert!(z.len() < bytes.len(), "{name}");
            compressed += 1;
        }
        for big in ["app.js", "style.css", "i18n/ar.json", "vendor/htm-preact.js"] {
            assert!(super::gzipped(big).is_some(), "{big} is not compressed");
        }
        assert!(compressed > 10);
        assert_eq!(super::gzipped("not/a/file.js"), None);
    }

    #[test]
    fn every_content_type_fits_its_name() {
        for (name, t, _) in super::FILES {
            let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
            let want = match ext {
                "html" => super::HTML,
                "js" => super::JS,
                "css" => super::CSS,
                "json" => super::JSON,
                "md" => super::MARKDOWN,
                "svg" => "image/svg+xml",
                _ => super::TEXT,
            };
            assert_eq!(*t, want, "{name}");
        }
    }

    #[test]
    fn no_file_runs_markup_from_strings() {
        // Trusted Types without a policy makes these throw; none may be there to begin with.
        // The vendored library's one path to innerHTML is `dangerouslySetInnerHTML`, which our
        // files may not use.
        const BAD: [&str; 9] = [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "style=",
            "dangerouslySetInnerHTML",
            "setAttribute(\"style",
        ];
        // What the browser runs or parses as markup (documentation and licences are not).
        let runs = |n: &str| [".js", ".html", ".svg"].iter().any(|e| n.ends_with(e));
        for (name, _, bytes) in super::FILES.iter().filter(|(n, _, _)| runs(n)) {
            let text = std::str::from_utf8(bytes).unwrap();
            for bad in BAD {
                let vendored = *name == "vendor/htm-preact.js"
                    && ["innerHTML", "dangerouslySetInnerHTML"].contains(&bad);
                assert!(vendored || !text.contains(bad), "{name} uses {bad}");
            }
        }
    }

    #[test]
    fn our_scripts_store_nothing_and_load_nothing_from_elsewhere() {
        for (name, _, bytes) in super::FILES {
            if name.starts_with("vendor/") || !(name.ends_with(".js") || name.ends_with(".html")) {
                continue;
            }
            let text = std::str::from_utf8(bytes).unwrap();
            for bad in [
                "localStorage",
                "sessionStorage",
                "indexedDB",
                "document.cookie",
                "http://",
                "https://",
                "<script>",
            ] {
                assert!(!text.contains(bad), "{name} uses {bad}");
            }
            if name.ends_with(".html") {
                for bad in [" onload=", " onclick=", " onerror=", "<style"] {
                    assert!(!text.contains(bad), "{name} has {bad}");
                }
            }
        }
    }
}
