//! The real GitHub webhook payloads of `shared/github-webhook-examples` (beside the checkout, or
//! where `HOOKFLOW_WEBHOOK_EXAMPLES` points), read in place: they are not part of the project.

use std::path::PathBuf;

/// The examples folder. In CI (`CI=true`) a missing folder fails the test; elsewhere the test
/// says so on stderr and the caller skips it (`None`).
pub fn dir() -> Option<PathBuf> {
    let candidates = std::env::var_os("HOOKFLOW_WEBHOOK_EXAMPLES")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            crate::root()
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

/// A GitHub `push` of at least `size` bytes, as compact JSON: a real example payload with more
/// commits (a small stand-in where the examples are missing outside CI).
pub fn push_of_size(size: usize) -> Vec<u8> {
    use serde_json::{json, Value};
    let example = dir()
        .and_then(|dir| std::fs::read(dir.join("push/with-organization.payload.json")).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let mut push = example.unwrap_or_else(|| json!({"ref": "refs/heads/main", "commits": []}));
    // Commits that differ as real ones do (ids and messages of hex), so the push does not
    // compress into a dispatch.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut hex_of = |n: usize| -> String {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b"0123456789abcdef"[(x & 15) as usize])
            })
            .collect()
    };
    let now = serde_json::to_vec(&push).expect("json").len();
    let mut added = 0;
    let mut commits = Vec::new();
    while now + added < size {
        let commit = json!({"id": hex_of(40), "message": format!("Update {}", hex_of(880)),
                            "distinct": true});
        added += serde_json::to_vec(&commit).expect("json").len() + 1;
        commits.push(commit);
    }
    if let Some(list) = push["commits"].as_array_mut() {
        list.extend(commits);
    }
    serde_json::to_vec(&push).expect("json")
}
