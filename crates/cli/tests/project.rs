//! The project's own files, as a new user meets them: licences declared and shipped.

use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn every_crate_is_dual_licensed_and_the_texts_ship() {
    let workspace = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    assert!(
        workspace.contains("license = \"MIT OR Apache-2.0\""),
        "the workspace declares the licence"
    );
    for krate in ["protocol", "runtime", "relay", "cli"] {
        let manifest = std::fs::read_to_string(root().join(format!("crates/{krate}/Cargo.toml")))
            .expect("manifest");
        assert!(
            manifest.contains("license.workspace = true"),
            "crates/{krate} inherits the licence"
        );
    }
    let apache = std::fs::read_to_string(root().join("LICENSE-APACHE")).expect("LICENSE-APACHE");
    assert!(apache.contains("Apache License") && apache.contains("Version 2.0"));
    let mit = std::fs::read_to_string(root().join("LICENSE-MIT")).expect("LICENSE-MIT");
    assert!(mit.contains("Permission is hereby granted, free of charge"));
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    assert!(readme.contains("LICENSE-APACHE") && readme.contains("LICENSE-MIT"));
}
