//! Helpers for tests that run the `hookflow` binary: a command with a clean environment, the
//! workspace root, and files written where a test wants them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// `hookflow`, with none of the variables a GitHub runner (or the machine running the tests)
/// may set, so every test starts from the same place.
pub fn hookflow() -> Command {
    let mut cmd = Command::cargo_bin("hookflow").expect("binary builds");
    for var in [
        "GITHUB_EVENT_PATH",
        "GITHUB_EVENT_NAME",
        "GITHUB_OUTPUT",
        "GITHUB_STEP_SUMMARY",
        "GITHUB_ACTIONS",
        "RUNNER_TEMP",
        "HOOKFLOW_NOW",
        "HOOKFLOW_WORKFLOWS",
        "HOOKFLOW_FAIL_ON_NO_MATCH",
        "HOOKFLOW_MAX_BODY_BYTES",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// The workspace root: crates/cli/../..
pub fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Writes `text` to `dir/rel`, creating folders; returns the path.
pub fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, text).expect("write");
    path
}
