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
        "HOOKFLOW_BODY_HOSTS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Writes `text` to `dir/rel`, creating folders; returns the path.
pub fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, text).expect("write");
    path
}

/// Runs the `hookflow` binary with `args` under GNU time (`/usr/bin/time`, which `.ci/run`
/// installs) with `envs` set and `GITHUB_ACTIONS` unset, in `dir` (GNU time writes there);
/// returns its peak RSS in bytes and its output.
pub fn run_peak_rss(
    dir: &Path,
    args: &[&std::ffi::OsStr],
    envs: &[(&str, &std::ffi::OsStr)],
) -> (u64, std::process::Output) {
    let gnu_time = Path::new("/usr/bin/time");
    assert!(
        gnu_time.exists(),
        "GNU time measures peak RSS here (apt-get install time; .ci/run installs it)"
    );
    let rss = dir.join("rss");
    let out = std::process::Command::new(gnu_time)
        .args(["-f", "%M", "-o"])
        .arg(&rss)
        .arg(assert_cmd::cargo::cargo_bin("hookflow"))
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("GITHUB_ACTIONS")
        .output()
        .expect("runs");
    let kib: u64 = std::fs::read_to_string(&rss)
        .expect("rss")
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("a number");
    (kib * 1024, out)
}

/// Reads `name<<DELIM` blocks back, checking each delimiter closes its block.
pub fn parse_github_output(text: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut lines = text.split('\n');
    while let Some(header) = lines.next() {
        if header.is_empty() {
            continue;
        }
        let (name, delim) = header.split_once("<<").expect("block header name<<DELIM");
        let mut value = Vec::new();
        loop {
            let line = lines.next().expect("block is closed by its delimiter");
            if line == delim {
                break;
            }
            value.push(line);
        }
        out.insert(name.to_string(), value.join("\n"));
    }
    out
}

/// The outputs a run appended to a `$GITHUB_OUTPUT` file.
pub fn read_outputs(file: &Path) -> std::collections::BTreeMap<String, String> {
    parse_github_output(&std::fs::read_to_string(file).expect("outputs file"))
}

/// What a `hookflow run` step did: its exit code, its log, its `$GITHUB_OUTPUT`.
pub struct StepRun {
    pub code: i32,
    pub stderr: String,
    pub outputs: std::collections::BTreeMap<String, String>,
}

/// `hookflow run` on `event` against the shipped example workflows, as a step would run it:
/// outputs to `outputs`, `RUNNER_TEMP` at `temp`, the examples' webhook secret, bodies by
/// reference fetched over plain http from `body_hosts`; `args` go before `--event`.
pub fn run_step(
    event: &Path,
    outputs: &Path,
    temp: &Path,
    secret: &str,
    body_hosts: &str,
    args: &[&str],
) -> StepRun {
    let _ = std::fs::remove_file(outputs);
    std::fs::create_dir_all(temp).expect("runner temp");
    let out = hookflow()
        .arg("run")
        .args(args)
        .arg("--event")
        .arg(event)
        .arg("--workflows")
        .arg(root().join("examples/workflows"))
        .env("GITHUB_OUTPUT", outputs)
        .env("RUNNER_TEMP", temp)
        .env("EXAMPLE_WEBHOOK_SECRET", secret)
        .env("HOOKFLOW_BODY_HOSTS", body_hosts)
        .output()
        .expect("runs");
    StepRun {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
        outputs: if outputs.exists() {
            read_outputs(outputs)
        } else {
            Default::default()
        },
    }
}

pub use hookflow_testkit::{github_signature, root};

/// The `hookflow` binary this test build made.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hookflow"))
}
