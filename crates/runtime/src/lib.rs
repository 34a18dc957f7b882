//! hookflow's trigger runtime: the step of a dispatched workflow that turns the webhook it carries
//! into step outputs.
//!
//! A relay turned an HTTP request into a `repository_dispatch` event whose `client_payload` holds
//! the request ([`hookflow_protocol::payload`]). This crate decodes that event, finds the webhook
//! trigger the request's URL names, applies the trigger's rules, and hands the request on as step
//! outputs. It starts no async runtime and does no network I/O of its own (a body the relay
//! keeps by reference is fetched with the runner's `curl`, [`remote`]): it runs once per
//! GitHub job.
//!
//! Module map, in the order a request flows through them:
//!
//! | module | concept |
//! |---|---|
//! | [`event`] | the GitHub event file and the payload inside it |
//! | [`request`] | the HTTP request carried in the payload, decoded as actionsflow does |
//! | [`remote`] | bodies the relay keeps and names by reference (`body_ref`), fetched and checked |
//! | [`body`] | large JSON bodies, parsed only as far as a trigger's rules read them |
//! | [`workflow`] | workflow files, their `on:` triggers, and their validation |
//! | [`route`] | `path-to-regexp` patterns of webhook triggers |
//! | [`matching`] | which triggers a request reaches, and what each hands on |
//! | [`rules`] | a trigger's `headers`, `verify`, `config.filter` and `outputs` |
//! | [`js`] | the JavaScript semantics actionsflow's rules rely on |
//! | [`result`] | what a run decided |
//! | [`output`] | `$GITHUB_OUTPUT`, the step summary, and the `--json` result |
//! | [`replay`] | running fixtures and comparing with golden files |
//!
//! The `hookflow` binary is a thin command-line layer over [`run_event_file`],
//! [`validate_dir`] and [`replay::replay_files`].

#![warn(missing_docs)]

pub mod body;
pub mod event;
pub mod js;
pub mod matching;
pub mod output;
pub mod remote;
pub mod replay;
pub mod request;
pub mod result;
pub mod route;
pub mod rules;
pub mod workflow;

use std::path::{Path, PathBuf};

pub use event::{load_event, Event, EventError};
pub use hookflow_protocol::Environment;
pub use matching::match_event;
pub use result::{Match, RunResult};
pub use workflow::{Problem, Workflow, WorkflowError};

/// Anything that stops a run from deciding: the input is invalid.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The event file or its payload.
    #[error(transparent)]
    Event(#[from] EventError),
    /// A workflow file the request reaches.
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    /// `HOOKFLOW_NOW` or another setting of the environment is unusable.
    #[error(transparent)]
    Environment(#[from] hookflow_protocol::environment::EnvironmentError),
    /// The workflows directory is missing.
    #[error("workflows directory {0} does not exist; pass --workflows DIR (the folder of your *.yml workflow files)")]
    NoWorkflowsDir(PathBuf),
}

/// Reads an event file and matches it against the workflows in `workflows`; `env` gives the
/// time and the secrets ([`Environment::from_process`] for the real ones).
pub fn run_event_file(
    event_file: &Path,
    event_name: Option<&str>,
    workflows: &Path,
    env: &Environment,
) -> Result<RunResult, Error> {
    run_event_file_limited(event_file, event_name, workflows, env, &Limits::default())
}

/// What a run accepts from an event: hostile input must not take the runner's memory.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest decoded body in bytes (after base64 and gzip).
    pub max_body_bytes: u64,
    /// How bodies by reference (`body_ref`) are fetched.
    pub fetcher: remote::Fetcher,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: hookflow_protocol::payload::MAX_DECODED_BODY,
            fetcher: remote::Fetcher::default(),
        }
    }
}

/// [`run_event_file`] with [`Limits`].
pub fn run_event_file_limited(
    event_file: &Path,
    event_name: Option<&str>,
    workflows: &Path,
    env: &Environment,
    limits: &Limits,
) -> Result<RunResult, Error> {
    if !workflows.is_dir() {
        return Err(Error::NoWorkflowsDir(workflows.to_path_buf()));
    }
    let reading = event::Reading {
        max_body_bytes: limits.max_body_bytes,
        fetcher: Some(&limits.fetcher),
    };
    let event = event::load_event_limited(event_file, event_name, &reading)?;
    Ok(match_event(event, workflows, env)?)
}

/// What `hookflow validate` found in a workflows directory.
#[derive(Debug, Clone, Default)]
pub struct Validation {
    /// The workflow files read, relative to the directory.
    pub files: Vec<String>,
    /// Errors: each makes the directory invalid.
    pub problems: Vec<Problem>,
    /// Warnings: worth fixing, not fatal.
    pub notices: Vec<Problem>,
    /// How many webhook triggers were found.
    pub webhook_triggers: usize,
}

/// Reads every workflow file below `dir` and reports every problem.
pub fn validate_dir(dir: &Path) -> Result<Validation, Error> {
    if !dir.is_dir() {
        return Err(Error::NoWorkflowsDir(dir.to_path_buf()));
    }
    let files = workflow::discover(dir).map_err(|e| {
        Error::Workflow(WorkflowError {
            problems: vec![Problem {
                file: dir.to_path_buf(),
                line: None,
                message: format!("cannot list workflow files: {e}"),
            }],
            notices: Vec::new(),
        })
    })?;
    let mut v = Validation {
        files: files.clone(),
        ..Validation::default()
    };
    let mut bases: std::collections::BTreeMap<String, String> = Default::default();
    for rel in &files {
        match workflow::load_workflow(&dir.join(rel), rel) {
            Ok(wf) => {
                v.notices.extend(wf.notices.iter().cloned());
                for t in wf.triggers.iter().filter(|t| t.webhook.is_some()) {
                    v.webhook_triggers += 1;
                    let base = wf.base_path(&t.name);
                    if let Some(other) = bases.insert(base.clone(), rel.clone()) {
                        v.notices.push(Problem {
                            file: dir.join(rel),
                            line: t.line,
                            message: format!(
                                "{other} has the same URL {base}; a request to it runs both"
                            ),
                        });
                    }
                }
            }
            Err(e) => {
                v.problems.extend(e.problems);
                v.notices.extend(e.notices);
            }
        }
    }
    Ok(v)
}
