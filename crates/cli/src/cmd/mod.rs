//! One module per command; the helpers they share (the process's environment, stdin and stdout,
//! notices) are here.

pub(crate) mod event;
#[cfg(feature = "relay")]
pub(crate) mod relay;
pub(crate) mod replay;
pub(crate) mod run;
pub(crate) mod sign;
pub(crate) mod validate;

use std::path::Path;

use anyhow::Context as _;
use hookflow_protocol::Environment;
use hookflow_runtime::output;

/// Whether this process runs as a step of GitHub Actions (where stdout and stderr are parsed for
/// workflow commands).
pub(crate) fn in_github_actions() -> bool {
    std::env::var_os("GITHUB_ACTIONS").is_some_and(|v| v == "true")
}

/// Notices go to stderr; inside GitHub Actions as annotations. Request text in them is escaped,
/// so it cannot start a line (a workflow command) of its own.
pub(crate) fn notice(text: &str) {
    if in_github_actions() {
        eprintln!("::notice::{}", output::log_safe(text));
    } else {
        eprintln!("hookflow: notice: {}", output::log_safe(text));
    }
}

/// The bytes of a file, or of stdin for `-`.
pub(crate) fn read_input(path: &str) -> anyhow::Result<Vec<u8>> {
    if path == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).context("cannot read stdin")?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("cannot read {path}"))
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
pub(crate) fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

pub(crate) fn append(file: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?
        .write_all(text.as_bytes())
}

/// The clock and the variables of this process: read here, at the edge, and passed in.
pub(crate) fn environment() -> anyhow::Result<Environment> {
    Ok(Environment::from_process()?)
}
