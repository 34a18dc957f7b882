//! The real GitHub webhook payloads of `shared/github-webhook-examples` (beside the checkout, or
//! where `HOOKFLOW_WEBHOOK_EXAMPLES` points), read in place: they are not part of the project.
#![allow(dead_code)]

use std::path::PathBuf;

/// The examples folder. In CI (`CI=true`) a missing folder fails the test; elsewhere the test
/// says so on stderr and the caller skips it (`None`).
pub fn dir() -> Option<PathBuf> {
    let candidates = std::env::var_os("HOOKFLOW_WEBHOOK_EXAMPLES")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            super::cli::root()
                .canonicalize()
                .ok()
                .into_iter()
                .flat_map(|root| {
                    root.ancestors()
                        .map(|a| a.join("shared/github-webhook-examples"))
                        .collect::<Vec<_>>()
                }),
        )
        .chain([PathBuf::from("/work/shared/github-webhook-examples")]);
    for c in candidates {
        if c.join("push").is_dir() {
            return Some(c);
        }
    }
    let message = "the GitHub webhook examples (shared/github-webhook-examples) are not beside this checkout; set HOOKFLOW_WEBHOOK_EXAMPLES to their folder";
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
    eprintln!("skipped: {message}");
    None
}

/// Every example payload: (its path below the folder, its bytes).
pub fn all() -> Vec<(String, Vec<u8>)> {
    let Some(dir) = dir() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read examples") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let rel = path
                    .strip_prefix(&dir)
                    .expect("below")
                    .display()
                    .to_string();
                out.push((rel, std::fs::read(&path).expect("read example")));
            }
        }
    }
    out.sort();
    out
}
