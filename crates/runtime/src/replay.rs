//! `hookflow replay`: the run pipeline on fixture files, for local testing, with golden files.
//!
//! A fixture is anything [`crate::event::load_event`] reads: a full event, actionsflow's
//! `{"event_name", "event"}` wrapper, or a bare `client_payload`. A golden file holds the JSON a
//! replay printed; a mismatch is shown as a unified diff of the pretty-printed JSON.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::output::result_json;
use crate::{run_event_file, Environment, Error};

/// Replays one fixture and returns the `--json` result.
pub fn replay_file(fixture: &Path, workflows: &Path, env: &Environment) -> Result<Value, Error> {
    let result = run_event_file(fixture, None, workflows, env)?;
    Ok(result_json(&result))
}

/// Replays several fixtures: one result for one fixture, an array in order for several.
pub fn replay_files(
    fixtures: &[PathBuf],
    workflows: &Path,
    env: &Environment,
) -> Result<Value, Error> {
    let mut results = Vec::with_capacity(fixtures.len());
    for f in fixtures {
        results.push(replay_file(f, workflows, env)?);
    }
    Ok(if results.len() == 1 {
        results.remove(0)
    } else {
        Value::Array(results)
    })
}

/// A golden file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GoldenError {
    /// It could not be read or written.
    #[error("golden file {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// It is not JSON.
    #[error("golden file {path}:{line}:{column}: not valid JSON: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        message: String,
    },
}

/// Compares a result with a golden file: `Ok(None)` when equal, else a unified diff
/// (`-` expected, `+` actual).
pub fn compare_with_golden(actual: &Value, golden: &Path) -> Result<Option<String>, GoldenError> {
    if !golden.exists() {
        return Err(GoldenError::Io {
            path: golden.to_path_buf(),
            cause: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "it does not exist; run the same command with --update to create it",
            ),
        });
    }
    let text = std::fs::read_to_string(golden).map_err(|cause| GoldenError::Io {
        path: golden.to_path_buf(),
        cause,
    })?;
    let expected: Value = serde_json::from_str(&text).map_err(|e| GoldenError::Json {
        path: golden.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    if &expected == actual {
        return Ok(None);
    }
    let expected_text = pretty(&expected);
    let actual_text = pretty(actual);
    let diff = similar::TextDiff::from_lines(&expected_text, &actual_text)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{} (expected)", golden.display()), "actual")
        .to_string();
    Ok(Some(diff))
}

/// Writes a result as a golden file.
pub fn write_golden(actual: &Value, golden: &Path) -> Result<(), GoldenError> {
    let io = |cause| GoldenError::Io {
        path: golden.to_path_buf(),
        cause,
    };
    if let Some(parent) = golden.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(golden, pretty(actual)).map_err(io)
}

/// Pretty JSON with a final newline, as golden files are stored.
pub fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}
