//! `hookflow validate`: every trigger file checked, each problem at its file:line.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct ValidateArgs {
    /// Folder of workflow files.
    #[arg(long, env = "HOOKFLOW_WORKFLOWS", default_value = "workflows")]
    workflows: PathBuf,
    /// Also check a relay configuration against the trigger files: every endpoint's path must
    /// reach a trigger that accepts its event types.
    #[cfg(feature = "relay")]
    #[arg(long)]
    relay_config: Option<PathBuf>,
}

pub(crate) fn validate(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    #[allow(unused_mut)]
    let mut v = hookflow_runtime::validate_dir(&args.workflows)?;
    #[cfg(feature = "relay")]
    if let Some(file) = &args.relay_config {
        let (problems, notices) = super::relay::check::cross_check_relay(file, &args.workflows)?;
        v.problems.extend(problems);
        v.notices.extend(notices);
    }
    for p in &v.problems {
        eprintln!("error: {p}");
    }
    for n in &v.notices {
        eprintln!("warning: {n}");
    }
    let count =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let summary = format!(
        "{}: {}, {}, {}, {}",
        args.workflows.display(),
        count(v.files.len(), "workflow file", "workflow files"),
        count(v.webhook_triggers, "webhook trigger", "webhook triggers"),
        count(v.problems.len(), "problem", "problems"),
        count(v.notices.len(), "warning", "warnings"),
    );
    if v.problems.is_empty() {
        println!("{summary}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{summary}");
        Ok(ExitCode::from(1))
    }
}
