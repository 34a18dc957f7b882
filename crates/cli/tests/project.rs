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

/// The shell block under a README heading.
fn readme_block(heading: &str) -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    let section = readme
        .split(&format!("\n{heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap_or_else(|| panic!("no sh block under {heading:?}"));
    block.to_string()
}

/// Runs a README block with `cargo run -q --` / `cargo run --` standing for this build's binary,
/// from a copy of the files it names, and returns stdout.
fn run_readme_block(block: &str, cwd: &std::path::Path) -> String {
    let bin = env!("CARGO_BIN_EXE_hookflow");
    let script = block
        .replace("cargo run -q --", bin)
        .replace("cargo run --", bin);
    let out = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(cwd)
        .env_remove("GITHUB_OUTPUT")
        .env_remove("GITHUB_ACTIONS")
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "README block failed:\n{script}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn the_readme_quick_start_commands_run() {
    // "Two commands": the first one (the second is this test suite).
    let two = readme_block("## Two commands");
    let first: String = two
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty() && !l.contains("scripts/test"))
        .collect::<Vec<_>>()
        .join("\n");
    run_readme_block(&first, &root());

    // "Try a trigger in a minute", in a scratch folder.
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = run_readme_block(&readme_block("## Try a trigger in a minute"), tmp.path());
    let result: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or_default()).expect("the run's JSON");
    assert_eq!(result["matched"], true, "{out}");
    assert_eq!(result["workflow"], "shop.yml");
}
