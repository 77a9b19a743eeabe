//! Every image docs/USER-GUIDE.md and the README show exists under `docs/app/` (APP.md §7): the
//! screenshots are made by `cargo run -p qanat-app --example screenshots -- docs/app`.

use std::path::Path;

/// The `app/….png` (guide) or `docs/app/….png` (README) paths a Markdown file names.
fn images(text: &str) -> Vec<String> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .filter(|target| target.ends_with(".png"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_image_the_guide_and_readme_name_exists() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    for (file, base) in
        [(docs.join("USER-GUIDE.md"), docs.clone()), (docs.join("../README.md"), docs.join(".."))]
    {
        let text = std::fs::read_to_string(&file).unwrap();
        let named = images(&text);
        assert!(!named.is_empty(), "{} names no image", file.display());
        for image in named {
            assert!(image.contains("app/"), "{image} in {} is not under docs/app/", file.display());
            assert!(base.join(&image).is_file(), "{} names {image}, which is missing", file.display());
        }
    }
}
