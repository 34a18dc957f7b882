//! `hookflow replay`: fixture events through the same pipeline, compared with goldens.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use hookflow_runtime::replay;

use super::{environment, print_out};

#[derive(clap::Args)]
pub(crate) struct ReplayArgs {
    /// Fixture files: full events, {"event_name","event"} wrappers, or bare client_payloads.
    #[arg(required = true)]
    fixtures: Vec<PathBuf>,
    /// Folder of workflow files.
    #[arg(long, env = "HOOKFLOW_WORKFLOWS", default_value = "workflows")]
    workflows: PathBuf,
    /// Golden file to compare the printed JSON with (an array when several fixtures are given).
    #[arg(long, conflicts_with = "expect_dir")]
    expect: Option<PathBuf>,
    /// Folder of golden files, one per fixture, named like the fixture.
    #[arg(long)]
    expect_dir: Option<PathBuf>,
    /// Write the golden files instead of comparing.
    #[arg(long)]
    update: bool,
}

pub(crate) fn replay_cmd(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let env = environment()?;
    if let Some(dir) = &args.expect_dir {
        let mut failed = 0;
        for fixture in &args.fixtures {
            let actual = replay::replay_file(fixture, &args.workflows, &env)
                .with_context(|| format!("replaying {}", fixture.display()))?;
            let name = fixture
                .file_name()
                .context("fixture path has no file name")?;
            let golden = dir.join(name);
            if args.update {
                replay::write_golden(&actual, &golden)?;
                eprintln!("hookflow: wrote {}", golden.display());
            } else {
                // Every fixture is compared, so one run lists every difference and every
                // missing or broken golden file.
                match replay::compare_with_golden(&actual, &golden) {
                    Ok(None) => eprintln!("hookflow: {} ok", fixture.display()),
                    Ok(Some(diff)) => {
                        failed += 1;
                        eprintln!(
                            "hookflow: {} differs from {}:\n{diff}",
                            fixture.display(),
                            golden.display()
                        );
                    }
                    Err(e) => {
                        failed += 1;
                        let hint = if golden.exists() {
                            ""
                        } else {
                            " (run with --update to write it)"
                        };
                        eprintln!("hookflow: {}: {e}{hint}", fixture.display());
                    }
                }
            }
        }
        if !args.update {
            eprintln!("{} passed, {} failed", args.fixtures.len() - failed, failed);
        }
        return Ok(if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let actual = replay::replay_files(&args.fixtures, &args.workflows, &env)?;
    print_out(&replay::pretty(&actual))?;
    if let Some(golden) = &args.expect {
        if args.update {
            replay::write_golden(&actual, golden)?;
            eprintln!("hookflow: wrote {}", golden.display());
        } else if let Some(diff) = replay::compare_with_golden(&actual, golden)? {
            eprintln!(
                "hookflow: result differs from {}:\n{diff}",
                golden.display()
            );
            return Ok(ExitCode::from(1));
        } else {
            eprintln!("hookflow: result matches {}", golden.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
