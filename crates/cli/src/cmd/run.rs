//! `hookflow run`: the action's step. Matches the dispatched webhook(s) of this workflow run and
//! writes step outputs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use hookflow_runtime::output;

use super::{append, environment, in_github_actions, notice, print_out};

#[derive(clap::Args)]
pub(crate) struct RunArgs {
    /// Folder of workflow files (*.yml, *.yaml; nested folders included).
    #[arg(long, env = "HOOKFLOW_WORKFLOWS", default_value = "workflows")]
    workflows: PathBuf,
    /// The event file.
    #[arg(long, env = "GITHUB_EVENT_PATH")]
    event: Option<PathBuf>,
    /// The event name.
    #[arg(long, env = "GITHUB_EVENT_NAME")]
    event_name: Option<String>,
    /// Print one JSON object to stdout instead of writing $GITHUB_OUTPUT.
    #[arg(long)]
    json: bool,
    /// Exit 1 when no trigger matches.
    #[arg(long, env = "HOOKFLOW_FAIL_ON_NO_MATCH", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    fail_on_no_match: bool,
    /// Largest decoded body in bytes (after base64 and gzip); a larger one is refused.
    #[arg(long, env = "HOOKFLOW_MAX_BODY_BYTES", default_value_t = hookflow_protocol::payload::MAX_DECODED_BODY)]
    max_body_bytes: u64,
    /// With --json (or without GITHUB_OUTPUT): print secret values (credential headers,
    /// `mask: true` outputs) in clear instead of `***`.
    #[arg(long)]
    show_secrets: bool,
    /// File that receives the outputs.
    #[arg(long, env = "GITHUB_OUTPUT")]
    github_output: Option<PathBuf>,
    /// File that receives the Markdown summary.
    #[arg(long, env = "GITHUB_STEP_SUMMARY")]
    step_summary: Option<PathBuf>,
    /// Folder for bodies too large for an output (`body_file`).
    #[arg(long, env = "RUNNER_TEMP")]
    runner_temp: Option<PathBuf>,
    /// Hosts (`host[:port]`, comma-separated) whose bodies by reference (`body_ref`) may be
    /// fetched over plain http; https URLs are fetched from any host.
    #[arg(long, env = "HOOKFLOW_BODY_HOSTS", value_delimiter = ',')]
    body_hosts: Vec<String>,
}

pub(crate) fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let event = args.event.context(
        "no event file: GITHUB_EVENT_PATH is not set; run inside GitHub Actions or pass --event FILE",
    )?;
    let env = environment()?;
    let limits = hookflow_runtime::Limits {
        max_body_bytes: args.max_body_bytes,
        fetcher: hookflow_runtime::remote::Fetcher {
            allowed_hosts: args
                .body_hosts
                .iter()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .collect(),
            dir: args.runner_temp.clone().unwrap_or_else(std::env::temp_dir),
            ..Default::default()
        },
    };
    let result = hookflow_runtime::run_event_file_limited(
        &event,
        args.event_name.as_deref(),
        &args.workflows,
        &env,
        &limits,
    )?;
    let secrets = output::secrets(&result);
    if in_github_actions() || (!args.json && args.github_output.is_some()) {
        // Masks first, so nothing printed later (notices included) shows the values; with
        // --json on stderr (the runner reads commands there too), so stdout stays one object.
        let masks = output::mask_commands(&secrets);
        if args.json {
            eprint!("{masks}");
        } else {
            print_out(&masks)?;
        }
    }
    for n in &result.notices {
        notice(n);
    }
    let mut outputs = output::outputs(&result);
    let json = || {
        let mut json = output::result_json(&result);
        if !args.show_secrets {
            output::redact(&mut json, &secrets);
        }
        format!("{json}\n")
    };
    if args.json {
        print_out(&json())?;
    } else {
        match &args.github_output {
            Some(file) => {
                let spill = args.runner_temp.clone().unwrap_or_else(std::env::temp_dir);
                output::write_event_bodies(&mut outputs, &result, &spill).with_context(|| {
                    format!("cannot write event bodies under {}", spill.display())
                })?;
                output::write_github_output(file, &outputs, &spill)
                    .with_context(|| format!("cannot write outputs to {}", file.display()))?;
            }
            None => {
                notice("GITHUB_OUTPUT is not set; printing the result as JSON instead");
                print_out(&json())?;
            }
        }
        if let Some(file) = &args.step_summary {
            append(file, &output::step_summary(&result, &outputs))
                .with_context(|| format!("cannot write the step summary to {}", file.display()))?;
        }
    }
    if let Some(refusal) = &result.refusal {
        if !result.matched() {
            eprintln!("hookflow: refused: {}", output::log_safe(refusal));
            return Ok(ExitCode::from(1));
        }
    }
    if let Some(batch) = &result.batch {
        let (matched, refused) = batch.counts();
        eprintln!(
            "hookflow: batch of {} events: {matched} matched, {refused} refused",
            batch.events.len()
        );
    }
    match (&result.reason, result.matched()) {
        (_, true) => {
            let m = &result.matches[0];
            eprintln!(
                "hookflow: matched {} trigger `{}`",
                output::log_safe(&m.workflow),
                output::log_safe(&m.trigger)
            );
            Ok(ExitCode::SUCCESS)
        }
        (reason, false) => {
            eprintln!(
                "hookflow: no match: {}",
                output::log_safe(reason.as_deref().unwrap_or("no trigger accepted the event"))
            );
            Ok(if args.fail_on_no_match {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
