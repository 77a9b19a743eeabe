//! The page's files, embedded in the binary: nothing is loaded from anywhere else, and no
//! JavaScript build step stands between the source and what the browser runs.

/// Every file of `assets/`: its name under `/assets/` (the page itself is `index.html`, served
/// at `/`), its content type, its bytes.
pub(crate) const FILES: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("../assets/index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../assets/app.js")),
    ("style.css", "text/css; charset=utf-8", include_bytes!("../assets/style.css")),
];

/// The file `name`: its content type and bytes.
pub(crate) fn get(name: &str) -> Option<(&'static str, &'static [u8])> {
    FILES.iter().find(|(n, _, _)| *n == name).map(|(_, t, b)| (*t, *b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_file_of_the_directory_is_embedded_and_no_other() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let mut on_disk: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        on_disk.sort();
        let mut table: Vec<String> = super::FILES.iter().map(|(n, _, _)| n.to_string()).collect();
        table.sort();
        assert_eq!(on_disk, table);
    }

    #[test]
    fn no_file_runs_markup_from_strings() {
        // Trusted Types without a policy makes these throw; none may be there to begin with.
        for (name, _, bytes) in super::FILES {
            let text = std::str::from_utf8(bytes).unwrap();
            for bad in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "style="] {
                assert!(!text.contains(bad), "{name} uses {bad}");
            }
        }
    }
}
