//! The `hookflow` command line: parses arguments, calls the library, maps results to exit codes.
//!
//! Exit codes: 0 success (or no match), 1 no match with `--fail-on-no-match`, a failed golden
//! comparison or validation problems, 2 invalid input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hookflow_protocol::{signature, Environment};

use hookflow_runtime::output;
use hookflow_runtime::replay;

#[derive(Parser)]
#[command(
    name = "hookflow",
    version,
    about = "Run GitHub Actions workflows from any HTTP webhook"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Match the dispatched webhook of this workflow run and write step outputs (the action).
    Run(RunArgs),
    /// Run fixture events through the same pipeline and print the JSON result.
    Replay(ReplayArgs),
    /// Check every workflow file and report each problem with file:line.
    Validate(ValidateArgs),
    /// Print the signature header(s) a sender adds to a body (for tests and senders' scripts).
    Sign(SignArgs),
    /// Build an event file from a request described as for curl, to try triggers without a relay.
    Event(EventArgs),
    /// Run the relay: accept webhooks, store them durably, deliver them as repository_dispatch.
    #[cfg(feature = "relay")]
    Relay(RelayArgs),
    /// Send one repository_dispatch event by hand.
    #[cfg(feature = "relay")]
    Dispatch(DispatchArgs),
}

#[cfg(feature = "relay")]
#[derive(clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Signals: SIGHUP reads --config again (endpoints, keys, limits, delivery settings, retention; a broken file is refused and the running configuration stays); SIGTERM or SIGINT drains and stops, a second one exits at once."
)]
struct RelayArgs {
    #[command(subcommand)]
    action: Option<RelayAction>,
    #[command(flatten)]
    store: StoreArgs,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "HOOKFLOW_LISTEN")]
    listen: Option<String>,
    /// GitHub API base (GitHub Enterprise Server: https://HOST/api/v3) [default: https://api.github.com].
    #[arg(long, env = "GITHUB_API_URL")]
    api_url: Option<String>,
    /// Log format.
    #[arg(long, env = "HOOKFLOW_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
    /// Check the configuration, report every problem with file:line, and exit.
    #[arg(long)]
    check_config: bool,
    /// Refuse to start on a store of an older schema instead of migrating it
    /// (`hookflow relay migrate` does it).
    #[arg(long)]
    no_migrate: bool,
}

#[cfg(feature = "relay")]
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

/// Where the relay's store is: the configuration file, overridden by --data.
#[cfg(feature = "relay")]
#[derive(clap::Args, Clone)]
struct StoreArgs {
    /// YAML configuration file (optional: without one the relay runs the compatible route).
    #[arg(long, env = "HOOKFLOW_RELAY_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory for the event store [default: hookflow-data].
    #[arg(long, env = "HOOKFLOW_DATA")]
    data: Option<PathBuf>,
    /// A PostgreSQL database several relays share, instead of SQLite in --data
    /// (postgres://USER@HOST:PORT/DB?sslmode=verify-full).
    #[arg(long, env = "HOOKFLOW_STORE")]
    store: Option<String>,
}

/// Which relay's store an operator's command works on: its configuration file or its data
/// directory.
#[cfg(feature = "relay")]
#[derive(clap::Args, Clone)]
struct StoreLocation {
    /// The relay's YAML configuration file (its `data:` names the store).
    #[arg(long, env = "HOOKFLOW_RELAY_CONFIG")]
    config: Option<PathBuf>,
    /// The relay's data directory, holding events.db (overrides the file's `data:`)
    /// [default: hookflow-data].
    #[arg(long, env = "HOOKFLOW_DATA")]
    data: Option<PathBuf>,
    /// The relay's PostgreSQL database (overrides the file's `store:`).
    #[arg(long, env = "HOOKFLOW_STORE")]
    store: Option<String>,
}

#[cfg(feature = "relay")]
impl From<StoreLocation> for StoreArgs {
    fn from(l: StoreLocation) -> StoreArgs {
        StoreArgs {
            config: l.config,
            data: l.data,
            store: l.store,
        }
    }
}

#[cfg(feature = "relay")]
#[derive(Subcommand)]
enum RelayAction {
    /// Inspect and fix events that could not be delivered (works while the relay runs).
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLetterAction),
    /// The event log: list events, show one with its attempts, replay (against a running
    /// relay's admin API with --admin-url, or on its store).
    #[command(subcommand)]
    Events(Box<EventsAction>),
    /// Bring the store to this hookflow's schema (start-up does it too, unless --no-migrate).
    Migrate {
        #[command(flatten)]
        store: StoreLocation,
    },
    /// Move a stopped relay's SQLite store into PostgreSQL: pending deliveries, dead letters and
    /// the last day's de-duplication keys. The SQLite file is then renamed out of the way.
    #[command(name = "migrate-store")]
    MigrateStore {
        /// The SQLite relay's data directory (its relay must be stopped).
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The PostgreSQL database: postgres://USER@HOST:PORT/DB.
        #[arg(long, value_name = "URL", env = "HOOKFLOW_STORE")]
        to: String,
    },
}

/// Where the event log is read: a running relay's admin API, or the store itself.
#[cfg(feature = "relay")]
#[derive(clap::Args, Clone)]
struct EventLogSource {
    #[command(flatten)]
    store: StoreLocation,
    /// A running relay's admin API (http://127.0.0.1:8081); its token comes from
    /// HOOKFLOW_ADMIN_TOKEN. Without it the store is read directly.
    #[arg(long, env = "HOOKFLOW_ADMIN_URL", value_name = "URL")]
    admin_url: Option<String>,
}

/// The event log's filters.
#[cfg(feature = "relay")]
#[derive(clap::Args, Clone, Default)]
struct EventFilters {
    /// Events with a delivery in this state: pending, inflight, delivered, dead.
    #[arg(long)]
    status: Option<String>,
    /// Events with a delivery to this repository (OWNER/NAME).
    #[arg(long)]
    repository: Option<String>,
    /// Events with a delivery to this destination (repo:OWNER/NAME or http:URL).
    #[arg(long)]
    destination: Option<String>,
    /// The endpoint slug, or compat.
    #[arg(long)]
    source: Option<String>,
    /// Received at or after (RFC 3339 or Unix seconds).
    #[arg(long)]
    since: Option<String>,
    /// Received before (RFC 3339 or Unix seconds).
    #[arg(long)]
    until: Option<String>,
    /// The sender's delivery id (X-GitHub-Delivery and the like).
    #[arg(long)]
    delivery: Option<String>,
    /// Text in the request path.
    #[arg(long = "path-contains", value_name = "TEXT")]
    q: Option<String>,
}

#[cfg(feature = "relay")]
impl EventFilters {
    /// As the admin API's query names and values.
    fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("status", &self.status),
            ("repository", &self.repository),
            ("destination", &self.destination),
            ("source", &self.source),
            ("since", &self.since),
            ("until", &self.until),
            ("delivery", &self.delivery),
            ("q", &self.q),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }

    /// The filters of one page of the list: with its size and where it starts.
    fn page(&self, limit: usize, before: Option<String>) -> Vec<(&'static str, String)> {
        let mut pairs = self.pairs();
        pairs.push(("limit", limit.to_string()));
        pairs.extend(before.map(|b| ("before", b)));
        pairs
    }
}

#[cfg(feature = "relay")]
#[derive(Subcommand)]
enum EventsAction {
    /// Events, newest first: id, age, status, source, request, deliveries.
    List {
        #[command(flatten)]
        from: EventLogSource,
        #[command(flatten)]
        filters: EventFilters,
        /// Most events (1 to 500).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// The next page: the last id of the previous one.
        #[arg(long)]
        before: Option<String>,
        /// Print JSON (as the admin API's) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One event: its request's headers, a body preview, each delivery with its attempts.
    Show {
        #[command(flatten)]
        from: EventLogSource,
        /// The event id.
        id: String,
        /// Print JSON (as the admin API's).
        #[arg(long)]
        json: bool,
    },
    /// Replay events (their delivered and dead deliveries, each as a new attempt chain): by id,
    /// or those the filters find.
    Replay {
        #[command(flatten)]
        from: EventLogSource,
        /// Event ids, or delivery ids (that destination alone).
        ids: Vec<String>,
        #[command(flatten)]
        filters: EventFilters,
        /// Most events a filter replays.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

#[cfg(feature = "relay")]
#[derive(Subcommand)]
enum DeadLetterAction {
    /// List dead letters, one per failed destination: delivery id, event id, destination,
    /// event type, attempts, age, last error.
    List {
        #[command(flatten)]
        store: StoreLocation,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Most letters to list.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Queue dead letters for delivery again, each from its first attempt.
    Replay {
        #[command(flatten)]
        store: StoreLocation,
        /// Delivery ids (that destination alone) or event ids (every dead destination of the
        /// event), as `list` shows them.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
    },
    /// Delete dead letters: those older than --older-than, or --all of them.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["older_than", "all"])))]
    Purge {
        #[command(flatten)]
        store: StoreLocation,
        /// Only those received longer ago than this (e.g. 7d, 12h).
        #[arg(long)]
        older_than: Option<String>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
    },
}

#[cfg(feature = "relay")]
#[derive(clap::Args)]
struct DispatchArgs {
    /// Target repository, OWNER/REPO.
    #[arg(long, required_unless_present = "relay")]
    repo: Option<String>,
    /// The event type (repository_dispatch `action`), at most 100 characters.
    #[arg(long, required_unless_present = "relay")]
    event_type: Option<String>,
    /// client_payload: inline JSON, @FILE, or - for stdin.
    #[arg(long, default_value = "{}", conflicts_with = "relay")]
    payload: String,
    /// Send a webhook through a relay instead: POST --body to this endpoint URL
    /// (https://relay.example.com/hooks/<slug>), which stores it and dispatches it, a body
    /// too large for a dispatch by reference (body_ref). Any size the relay accepts.
    #[arg(long, value_name = "URL", conflicts_with_all = ["repo", "event_type", "app_id"])]
    relay: Option<String>,
    /// With --relay: the webhook's body, @FILE or - for stdin (sent byte for byte).
    #[arg(long, value_name = "@FILE", requires = "relay", default_value = "")]
    body: String,
    /// With --relay: a request header, "Name: value" (repeatable), e.g. -H 'Content-Type: application/json'.
    #[arg(
        long = "header",
        short = 'H',
        value_name = "NAME: VALUE",
        requires = "relay"
    )]
    headers: Vec<String>,
    /// With --relay: the variable holding one of the endpoint's API keys (sent as a bearer token).
    #[arg(long, value_name = "VAR", requires = "relay")]
    api_key_env: Option<String>,
    /// GitHub API base.
    #[arg(long, env = "GITHUB_API_URL", default_value = hookflow_relay::outbound::github::DEFAULT_API_URL)]
    api_url: String,
    /// Environment variable holding the token.
    #[arg(long, default_value = "GITHUB_TOKEN")]
    token_env: String,
    /// Send as this GitHub App (with --private-key) instead of a token: an installation token
    /// for the repository is minted for this one dispatch.
    #[arg(long, requires = "private_key", value_name = "ID")]
    app_id: Option<u64>,
    /// The GitHub App's private key (PEM file from the app's settings page).
    #[arg(long, requires = "app_id", value_name = "FILE")]
    private_key: Option<PathBuf>,
}

#[derive(clap::Args)]
struct SignArgs {
    /// Signature preset.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(signature::PRESETS), required_unless_present = "header")]
    preset: Option<String>,
    /// Custom scheme: the header to write (instead of --preset).
    #[arg(long, conflicts_with = "preset")]
    header: Option<String>,
    /// Custom scheme: HMAC hash.
    #[arg(long, value_enum, default_value_t = AlgorithmArg::Sha256, requires = "header")]
    algorithm: AlgorithmArg,
    /// Custom scheme: how the MAC is written.
    #[arg(long, value_enum, default_value_t = EncodingArg::Hex, requires = "header")]
    encoding: EncodingArg,
    /// Custom scheme: text before the MAC (e.g. "sha256=").
    #[arg(long, default_value = "", requires = "header")]
    prefix: String,
    /// Environment variable holding the secret (never pass secrets as arguments).
    #[arg(long)]
    secret_env: String,
    /// Unix timestamp for timestamped schemes (default: now).
    #[arg(long)]
    timestamp: Option<i64>,
    /// Message id for standard-webhooks (default: random).
    #[arg(long)]
    id: Option<String>,
    /// How to print the headers: `headers` (one `Name: value` per line) or `curl` (a curl config
    /// on stdin: `hookflow sign … --format curl FILE | curl -K - --data-binary @FILE URL`).
    #[arg(long, value_enum, default_value_t = SignFormat::Headers)]
    format: SignFormat,
    /// The body file, or - for stdin.
    #[arg(default_value = "-")]
    file: PathBuf,
}

#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  hookflow event -H 'Content-Type: application/json' -d @body.json /stripe/webhook/events > event.json\n  hookflow run --event event.json --json"
)]
struct EventArgs {
    /// The request's URL or path: https://relay.example.com/stripe/webhook/events, or
    /// /stripe/webhook/events (scheme and host are dropped; the path names the trigger).
    url: String,
    /// HTTP method [default: POST with a body, else GET].
    #[arg(short = 'X', long = "request")]
    method: Option<String>,
    /// A request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// The body: text, @FILE, or @- for stdin (sent as is, like curl's --data-binary).
    #[arg(short = 'd', long = "data", alias = "data-binary")]
    data: Option<String>,
    /// The repository_dispatch event type.
    #[arg(long, default_value = hookflow_protocol::dispatch::WEBHOOK_EVENT_TYPE)]
    event_type: String,
}

/// `--format` of `hookflow sign`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SignFormat {
    Headers,
    Curl,
}

/// `--algorithm` of `hookflow sign`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum AlgorithmArg {
    Sha1,
    Sha256,
    Sha512,
}

impl From<AlgorithmArg> for signature::Algorithm {
    fn from(a: AlgorithmArg) -> Self {
        match a {
            AlgorithmArg::Sha1 => signature::Algorithm::Sha1,
            AlgorithmArg::Sha256 => signature::Algorithm::Sha256,
            AlgorithmArg::Sha512 => signature::Algorithm::Sha512,
        }
    }
}

/// `--encoding` of `hookflow sign`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum EncodingArg {
    Hex,
    Base64,
}

impl From<EncodingArg> for signature::Encoding {
    fn from(e: EncodingArg) -> Self {
        match e {
            EncodingArg::Hex => signature::Encoding::Hex,
            EncodingArg::Base64 => signature::Encoding::Base64,
        }
    }
}

#[derive(clap::Args)]
struct RunArgs {
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

#[derive(clap::Args)]
struct ReplayArgs {
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

#[derive(clap::Args)]
struct ValidateArgs {
    /// Folder of workflow files.
    #[arg(long, env = "HOOKFLOW_WORKFLOWS", default_value = "workflows")]
    workflows: PathBuf,
    /// Also check a relay configuration against the trigger files: every endpoint's path must
    /// reach a trigger that accepts its event types.
    #[cfg(feature = "relay")]
    #[arg(long)]
    relay_config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let outcome = match cli.command {
        Command::Run(args) => run(args),
        Command::Replay(args) => replay_cmd(args),
        Command::Validate(args) => validate(args),
        Command::Sign(args) => sign(args),
        Command::Event(args) => event(args),
        #[cfg(feature = "relay")]
        Command::Relay(args) => relay(args, setting_sources(matches.subcommand_matches("relay"))),
        #[cfg(feature = "relay")]
        Command::Dispatch(args) => dispatch(args),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hookflow: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Whether this process runs as a step of GitHub Actions (where stdout and stderr are parsed for
/// workflow commands).
fn in_github_actions() -> bool {
    std::env::var_os("GITHUB_ACTIONS").is_some_and(|v| v == "true")
}

/// Notices go to stderr; inside GitHub Actions as annotations. Request text in them is escaped,
/// so it cannot start a line (a workflow command) of its own.
fn notice(text: &str) {
    if in_github_actions() {
        eprintln!("::notice::{}", output::log_safe(text));
    } else {
        eprintln!("hookflow: notice: {}", output::log_safe(text));
    }
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
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

fn event(args: EventArgs) -> anyhow::Result<ExitCode> {
    use hookflow_protocol::payload::{ClientPayload, Incoming, Origin};
    let body = match args.data.as_deref() {
        None => Vec::new(),
        Some(d) => match d.strip_prefix('@') {
            Some(file) => read_input(file)?,
            None => d.as_bytes().to_vec(),
        },
    };
    // The path and query: what follows the host of a URL, or the text itself.
    let path = match args.url.split_once("://") {
        Some((_, rest)) => rest
            .find('/')
            .map_or("/".to_string(), |i| rest[i..].to_string()),
        None if args.url.starts_with('/') => args.url.clone(),
        None => format!("/{}", args.url),
    };
    let mut headers = serde_json::Map::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("-H {h:?} is not a header; write it as 'Name: value'"))?;
        headers.insert(
            name.trim().to_ascii_lowercase(),
            serde_json::Value::String(value.trim().to_string()),
        );
    }
    let method = args
        .method
        .clone()
        .unwrap_or_else(|| if body.is_empty() { "GET" } else { "POST" }.to_string());
    let incoming = Incoming {
        method,
        path,
        headers,
        body,
    };
    let now = chrono::Utc::now();
    let received = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let id = format!("event-{}", now.timestamp_nanos_opt().unwrap_or_default());
    let origin = Origin {
        id: &id,
        received_at: &received,
        source: "hookflow event",
    };
    let prepared = ClientPayload::encode_request(&incoming, &args.event_type, origin)?;
    // The dispatch request, plus `action` as GitHub's event file has it.
    let mut event: serde_json::Value = serde_json::from_slice(&prepared.dispatch_body)?;
    if let Some(map) = event.as_object_mut() {
        map.insert(
            "action".into(),
            serde_json::Value::String(args.event_type.clone()),
        );
        map.remove("event_type");
    }
    print_out(&format!("{}\n", serde_json::to_string_pretty(&event)?))?;
    Ok(ExitCode::SUCCESS)
}

/// The bytes of a file, or of stdin for `-`.
fn read_input(path: &str) -> anyhow::Result<Vec<u8>> {
    if path == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).context("cannot read stdin")?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("cannot read {path}"))
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

fn append(file: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?
        .write_all(text.as_bytes())
}

/// The clock and the variables of this process: read here, at the edge, and passed in.
fn environment() -> anyhow::Result<Environment> {
    Ok(Environment::from_process()?)
}

fn replay_cmd(args: ReplayArgs) -> anyhow::Result<ExitCode> {
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

fn sign(args: SignArgs) -> anyhow::Result<ExitCode> {
    use signature::{Custom, Scheme};
    let scheme = match (&args.preset, &args.header) {
        (Some(p), _) => Scheme::preset(p).with_context(|| format!("unknown preset {p}"))?,
        (None, Some(h)) => Scheme::Custom(Custom {
            header: h.clone(),
            algorithm: args.algorithm.into(),
            encoding: args.encoding.into(),
            prefix: args.prefix.clone(),
        }),
        (None, None) => anyhow::bail!("pass --preset or --header"),
    };
    let env = environment()?;
    let secret = env.var(&args.secret_env).with_context(|| {
        format!(
            "--secret-env names {}, which is not set or empty",
            args.secret_env
        )
    })?;
    let body = read_input(&args.file.to_string_lossy())?;
    let timestamp = args.timestamp.unwrap_or_else(|| env.now());
    let id = args.id.clone().unwrap_or_else(|| {
        format!(
            "msg_{}",
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        )
    });
    let headers = signature::sign(&scheme, &body, secret.as_bytes(), timestamp, &id)?;
    let text: String = match args.format {
        SignFormat::Headers => headers.iter().map(|(k, v)| format!("{k}: {v}\n")).collect(),
        // curl's config syntax: one `header = "…"` per header, every one sent (a shell's
        // `-H "$(…)"` would take only one line).
        SignFormat::Curl => headers
            .iter()
            .map(|(k, v)| {
                format!(
                    "header = \"{k}: {}\"\n",
                    v.replace('\\', "\\\\").replace('"', "\\\"")
                )
            })
            .collect(),
    };
    print_out(&text)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "relay")]
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Where `--listen`, `--data` and `--api-url` came from: the command line or the environment
/// (for `--check-config`'s account of the effective values).
#[cfg(feature = "relay")]
fn setting_sources(matches: Option<&clap::ArgMatches>) -> Vec<(String, String)> {
    let Some(m) = matches else {
        return Vec::new();
    };
    [
        ("listen", "--listen", "HOOKFLOW_LISTEN"),
        ("data", "--data", "HOOKFLOW_DATA"),
        ("store", "--store", "HOOKFLOW_STORE"),
        ("api_url", "--api-url", "GITHUB_API_URL"),
    ]
    .into_iter()
    .filter_map(|(id, flag, env)| {
        let source = match m.value_source(id)? {
            clap::parser::ValueSource::CommandLine => format!("flag {flag}"),
            clap::parser::ValueSource::EnvVariable => format!("environment {env}"),
            _ => return None,
        };
        Some((id.to_string(), source))
    })
    .collect()
}

#[cfg(feature = "relay")]
fn relay_config(
    store: &StoreArgs,
    listen: Option<String>,
    api_url: Option<String>,
    sources: Vec<(String, String)>,
) -> anyhow::Result<hookflow_relay::RelayConfig> {
    use hookflow_relay::config::{Overrides, RelayConfig};
    let overrides = Overrides {
        listen,
        data: store.data.clone(),
        store: store.store.clone(),
        api_url,
        sources,
    };
    Ok(match &store.config {
        Some(file) => RelayConfig::load(file, &overrides)?,
        None => RelayConfig::from_flags(&overrides)?,
    })
}

#[cfg(feature = "relay")]
fn relay(args: RelayArgs, sources: Vec<(String, String)>) -> anyhow::Result<ExitCode> {
    match args.action {
        Some(RelayAction::DeadLetters(action)) => return dead_letters(action),
        Some(RelayAction::Events(action)) => return events(*action),
        Some(RelayAction::Migrate { store }) => {
            let config = relay_config(&StoreArgs::from(store), None, None, Vec::new())?;
            let (place, before, after) =
                runtime()?.block_on(hookflow_relay::operator::migrate_store(&config))?;
            if before == after {
                eprintln!("hookflow: the store in {place} is at schema {after}; nothing to do");
            } else {
                eprintln!("hookflow: the store in {place} went from schema {before} to {after}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        Some(RelayAction::MigrateStore { from, to }) => {
            let to = hookflow_relay::store::postgres::PgLocation::parse(&to)
                .map_err(|e| anyhow::anyhow!("--to: {e}"))?;
            let now = environment()?.now_ms();
            let moved =
                runtime()?.block_on(hookflow_relay::operator::move_store(&from, &to, now))?;
            eprintln!(
                "hookflow: moved {} pending deliveries, {} dead letters and {} de-duplication keys from {} to {}{}",
                moved.pending,
                moved.dead,
                moved.keys,
                from.display(),
                to,
                if moved.already_there > 0 {
                    format!(" ({} events were there already and were left as they were)", moved.already_there)
                } else {
                    String::new()
                }
            );
            eprintln!(
                "hookflow: the SQLite store is now {}; delete it once the relays on PostgreSQL run well",
                moved.set_aside.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    let mut config = relay_config(
        &args.store,
        args.listen.clone(),
        args.api_url.clone(),
        sources,
    )?;
    config.migrate = !args.no_migrate;
    let env = environment()?;
    if args.check_config {
        let name = args
            .store
            .config
            .as_ref()
            .map_or("the defaults".to_string(), |f| f.display().to_string());
        let report = hookflow_relay::operator::check_config(&config, &name, &env);
        println!("{}", report.summary);
        for line in &report.settings {
            println!("  {line}");
        }
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        for e in &report.errors {
            eprintln!("error: {e}");
        }
        return Ok(if report.errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOOKFLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal, never into a file or a log collector.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if args.log_format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
    runtime()?.block_on(async move {
        let running = hookflow_relay::start(config, env).await?;
        // Registered before the relay says it listens: from then on SIGHUP reloads (its default
        // would end the process).
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut hangups = signal(SignalKind::hangup())?;
            let live = running.live.clone();
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    let live = live.clone();
                    // Logged by the reload itself: what changed, or why it was refused.
                    let _ = tokio::task::spawn_blocking(move || live.reload()).await;
                }
            });
        }
        eprintln!("hookflow relay: listening on http://{}", running.addr);
        shutdown_signal().await;
        eprintln!("hookflow relay: stopping (a second signal forces exit)");
        tokio::spawn(async {
            shutdown_signal().await;
            eprintln!("hookflow relay: forced exit");
            std::process::exit(130);
        });
        running.stop().await;
        eprintln!("hookflow relay: stopped");
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(feature = "relay")]
fn dead_letters(action: DeadLetterAction) -> anyhow::Result<ExitCode> {
    use hookflow_relay::operator;
    use hookflow_relay::store::Store as _;
    let store_args = match &action {
        DeadLetterAction::List { store, .. }
        | DeadLetterAction::Replay { store, .. }
        | DeadLetterAction::Purge { store, .. } => StoreArgs::from(store.clone()),
    };
    let config = relay_config(&store_args, None, None, Vec::new())?;
    let env = environment()?;
    let now = env.now_ms();
    runtime()?.block_on(async move {
        let store = operator::open_store(&config, env.clock()).await?;
        match action {
            DeadLetterAction::List { json, limit, .. } => {
                let letters = store.dead_letters(limit).await?;
                if json {
                    print_out(&format!("{}\n", operator::dead_letters_json(&letters, now)))?;
                } else {
                    print_out(&operator::dead_letters_table(&letters, now))?;
                }
            }
            DeadLetterAction::Replay { ids, all, .. } => {
                let asked = ids.len();
                let n = store
                    .replay_dead(if all { Vec::new() } else { ids })
                    .await?;
                eprintln!("hookflow: {n} dead letter(s) queued for delivery again");
                if !all && (n as usize) < asked {
                    eprintln!(
                        "hookflow: {} id(s) were not dead letters",
                        asked - n as usize
                    );
                    return Ok(ExitCode::from(1));
                }
            }
            DeadLetterAction::Purge { older_than, .. } => {
                let older_than = match older_than {
                    None => std::time::Duration::ZERO,
                    Some(text) => {
                        let ms = hookflow_protocol::options::parse_duration_ms(
                            &serde_json::Value::String(text.clone()),
                        )
                        .with_context(|| {
                            format!("--older-than {text:?} is not a duration such as 7d, 12h, 30m")
                        })?;
                        std::time::Duration::from_millis(ms.max(1) as u64)
                    }
                };
                let n = store.purge_dead(older_than).await?;
                eprintln!("hookflow: {n} dead letter(s) deleted");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `hookflow relay events …`: the event log, through a running relay's admin API or on its
/// store; both give the same JSON, and the tables are made from it.
#[cfg(feature = "relay")]
fn events(action: EventsAction) -> anyhow::Result<ExitCode> {
    use hookflow_relay::operator;
    use hookflow_relay::store::Store as _;
    let from = match &action {
        EventsAction::List { from, .. }
        | EventsAction::Show { from, .. }
        | EventsAction::Replay { from, .. } => from.clone(),
    };
    let env = environment()?;
    let now = env.now_ms();
    let rt = runtime()?;
    if let Some(url) = &from.admin_url {
        let api = AdminApi::new(url, &env)?;
        return rt.block_on(async move {
            match action {
                EventsAction::List {
                    filters,
                    limit,
                    before,
                    json,
                    ..
                } => {
                    let page = api.get("/api/events", &filters.page(limit, before)).await?;
                    print_events(&page, json, now)
                }
                EventsAction::Show { id, json, .. } => {
                    let event = api.get(&format!("/api/events/{id}"), &[]).await?;
                    print_event(&event, json, now)
                }
                EventsAction::Replay {
                    ids,
                    filters,
                    limit,
                    ..
                } => {
                    let mut replayed = 0;
                    for id in &ids {
                        let answer = api
                            .post(&format!("/api/events/{id}/replay"), serde_json::json!({}))
                            .await?;
                        replayed += answer["replayed"].as_u64().unwrap_or_default();
                    }
                    if ids.is_empty() {
                        let mut body: serde_json::Map<String, serde_json::Value> = filters
                            .pairs()
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v.into()))
                            .collect();
                        body.insert("limit".into(), limit.into());
                        let answer = api.post("/api/replay", body.into()).await?;
                        replayed += answer["replayed"].as_u64().unwrap_or_default();
                    }
                    eprintln!("hookflow: {replayed} delivery(ies) queued again");
                    Ok(ExitCode::SUCCESS)
                }
            }
        });
    }
    let config = relay_config(&StoreArgs::from(from.store), None, None, Vec::new())?;
    rt.block_on(async move {
        let store = operator::open_store(&config, env.clock()).await?;
        match action {
            EventsAction::List {
                filters,
                limit,
                before,
                json,
                ..
            } => {
                let pairs = filters.page(limit, before);
                let (filter, limit) =
                    operator::event_filter(pairs.iter().map(|(k, v)| (*k, v.as_str())))?;
                let events = store.list_events(filter, limit).await?;
                print_events(&operator::event_page_json(&events, limit), json, now)
            }
            EventsAction::Show { id, json, .. } => match store.logged_event(id.clone()).await? {
                Some(e) => print_event(&operator::logged_event_json(&e), json, now),
                None => anyhow::bail!(
                    "no event {id} in the log (never received, or pruned after retention.events)"
                ),
            },
            EventsAction::Replay {
                ids,
                filters,
                limit,
                ..
            } => {
                let pairs = filters.pairs();
                if ids.is_empty() && pairs.is_empty() {
                    anyhow::bail!("give event ids, or at least one filter (such as --status dead)");
                }
                let (filter, _) =
                    operator::event_filter(pairs.iter().map(|(k, v)| (*k, v.as_str())))?;
                let n = store
                    .replay(ids, filter, limit.clamp(1, operator::MAX_REPLAY))
                    .await?;
                eprintln!("hookflow: {n} delivery(ies) queued again");
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// A running relay's admin API, with the token from `HOOKFLOW_ADMIN_TOKEN`.
#[cfg(feature = "relay")]
struct AdminApi {
    base: String,
    token: String,
    client: reqwest::Client,
}

#[cfg(feature = "relay")]
impl AdminApi {
    fn new(url: &str, env: &hookflow_protocol::Environment) -> anyhow::Result<AdminApi> {
        let parsed = url::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .with_context(|| {
                format!("--admin-url {url:?} is not an http(s) URL such as http://127.0.0.1:8081")
            })?;
        let token = env.var("HOOKFLOW_ADMIN_TOKEN").context(
            "HOOKFLOW_ADMIN_TOKEN is not set: give one of the relay's admin tokens (admin.tokens_env)",
        )?;
        Ok(AdminApi {
            base: parsed.as_str().trim_end_matches('/').to_string(),
            token,
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .context("cannot build the HTTP client")?,
        })
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<serde_json::Value> {
        let request = self
            .client
            .get(format!("{}{path}", self.base))
            .query(query)
            .bearer_auth(&self.token);
        self.answer(request).await
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .bearer_auth(&self.token);
        self.answer(request).await
    }

    async fn answer(&self, request: reqwest::RequestBuilder) -> anyhow::Result<serde_json::Value> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the admin API at {}", self.base))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if !status.is_success() {
            anyhow::bail!(
                "the admin API answered {}: {}",
                status.as_u16(),
                answer["message"].as_str().unwrap_or("no message")
            );
        }
        Ok(answer)
    }
}

/// A page of events as a table (or its JSON).
#[cfg(feature = "relay")]
fn print_events(page: &serde_json::Value, json: bool, now_ms: i64) -> anyhow::Result<ExitCode> {
    if json {
        print_out(&format!("{page:#}\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let events = page["events"].as_array().cloned().unwrap_or_default();
    let mut text = format!(
        "{:<26}  {:>5}  {:<9}  {:<12}  {:<40}  deliveries\n",
        "event", "age", "status", "source", "request"
    );
    for e in &events {
        let deliveries: Vec<String> = e["deliveries"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                format!(
                    "{} {} ({})",
                    d["destination"].as_str().unwrap_or_default(),
                    d["status"].as_str().unwrap_or_default(),
                    d["attempts"]
                )
            })
            .collect();
        text.push_str(&format!(
            "{:<26}  {:>5}  {:<9}  {:<12}  {:<40}  {}\n",
            e["id"].as_str().unwrap_or_default(),
            age_of(&e["received_at"], now_ms),
            e["status"].as_str().unwrap_or_default(),
            e["source"].as_str().unwrap_or_default(),
            ellipsis(
                &format!(
                    "{} {}",
                    e["method"].as_str().unwrap_or_default(),
                    e["path"].as_str().unwrap_or_default()
                ),
                40
            ),
            deliveries.join(", ")
        ));
    }
    text.push_str(&format!("{} event(s)", events.len()));
    if let Some(next) = page["next"].as_str() {
        text.push_str(&format!("; next page: --before {next}"));
    }
    text.push('\n');
    print_out(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// One event as text (or its JSON): the request, then each delivery's attempts.
#[cfg(feature = "relay")]
fn print_event(e: &serde_json::Value, json: bool, now_ms: i64) -> anyhow::Result<ExitCode> {
    if json {
        print_out(&format!("{e:#}\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let mut text = format!(
        "event     {}\nreceived  {} ({} ago)\nsource    {}\ntype      {}\nrequest   {} {}\nstatus    {}\n",
        s(&e["id"]),
        s(&e["received_at"]),
        age_of(&e["received_at"], now_ms),
        s(&e["source"]),
        s(&e["event_type"]),
        s(&e["method"]),
        s(&e["path"]),
        s(&e["status"])
    );
    if let Some(d) = e["delivery"].as_str() {
        text.push_str(&format!("delivery  {d} (the sender's)\n"));
    }
    text.push_str("headers\n");
    for (k, v) in e["headers"].as_object().into_iter().flatten() {
        text.push_str(&format!("  {k}: {}\n", v.as_str().unwrap_or_default()));
    }
    text.push_str(&format!(
        "body      {} bytes{}\n",
        e["body"]["size"],
        if e["body"]["truncated"] == true {
            ", the first 4096 shown"
        } else {
            ""
        }
    ));
    for d in e["deliveries"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            "delivery {} to {}: {} after {} attempt(s), chain {}\n",
            s(&d["id"]),
            s(&d["destination"]),
            s(&d["status"]),
            d["attempts"],
            d["chain"]
        ));
        for t in d["tries"].as_array().into_iter().flatten() {
            text.push_str(&format!(
                "  {}  chain {}  {:<9}  {:>4}  {:>6} ms  {}\n",
                s(&t["at"]),
                t["chain"],
                s(&t["outcome"]),
                t["status"]
                    .as_u64()
                    .map(|c| c.to_string())
                    .unwrap_or("-".into()),
                t["took_ms"]
                    .as_u64()
                    .map(|c| c.to_string())
                    .unwrap_or("-".into()),
                s(&t["message"])
            ));
        }
    }
    print_out(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// The age of an RFC 3339 time as `42s`, `5m`, `3h`, `2d`.
#[cfg(feature = "relay")]
fn age_of(at: &serde_json::Value, now_ms: i64) -> String {
    at.as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| hookflow_relay::operator::human_age(now_ms - t.timestamp_millis()))
        .unwrap_or_default()
}

/// `text` cut to `n` characters, with `…` when cut.
#[cfg(feature = "relay")]
fn ellipsis(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(n.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// SIGINT or SIGTERM.
#[cfg(feature = "relay")]
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(feature = "relay")]
fn dispatch(args: DispatchArgs) -> anyhow::Result<ExitCode> {
    use hookflow_protocol::dispatch::{check_limits, LimitError, Repo, MAX_REQUEST_BYTES};
    use hookflow_relay::outbound::github::{Client, Outcome};
    if let Some(url) = &args.relay {
        return send_to_relay(url, &args);
    }
    let (Some(repo), Some(event_type)) = (&args.repo, &args.event_type) else {
        anyhow::bail!("give --repo and --event-type (or --relay URL to send through a relay)");
    };
    let repo = Repo::parse(repo)?;
    let text = match args.payload.strip_prefix('@') {
        Some(file) => {
            String::from_utf8(read_input(file)?).context("the payload file is not UTF-8")?
        }
        None if args.payload == "-" => {
            String::from_utf8(read_input("-")?).context("the payload is not UTF-8")?
        }
        None => args.payload.clone(),
    };
    let payload: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("--payload is not valid JSON ({} bytes)", text.len()))?;
    // A whole event or dispatch request given as the payload would end up nested inside
    // client_payload, where no trigger finds it.
    if payload
        .get("client_payload")
        .is_some_and(serde_json::Value::is_object)
        && (payload.get("action").is_some() || payload.get("event_type").is_some())
    {
        anyhow::bail!(
            "--payload is a whole event (it has `client_payload` and `{}`); pass only its client_payload, e.g. --payload \"$(jq -c .client_payload FILE)\", and its type as --event-type",
            if payload.get("action").is_some() { "action" } else { "event_type" }
        );
    }
    let body = match check_limits(event_type, &payload) {
        Ok(body) => body,
        Err(LimitError::TooLarge(n)) => anyhow::bail!(
            "GitHub would refuse this dispatch: it is {n} bytes, and GitHub accepts dispatches under {MAX_REQUEST_BYTES} bytes. \
             A dispatch cannot carry a large body itself; send the webhook through a relay that keeps it and dispatches it by reference \
             (public_url and body_ref in its configuration): hookflow dispatch --relay https://RELAY/hooks/SLUG --body @FILE -H 'Content-Type: application/json'"
        ),
        Err(e) => return Err(anyhow::Error::new(e).context("GitHub would refuse this dispatch")),
    };
    let mut client = Client::new(&args.api_url, std::time::Duration::from_secs(30))?;
    let rt = runtime()?;
    let token = match (args.app_id, &args.private_key) {
        (Some(app_id), Some(key)) => {
            let key = hookflow_relay::outbound::github_app::AppKey::from_file(app_id, key)?;
            client = client.with_app(key, environment()?.clock());
            let tokens = client.app().context("the app client")?;
            eprintln!("hookflow: as GitHub App {app_id}: an installation token for {repo}");
            rt.block_on(tokens.token(&repo))
                .context("no installation token")?
        }
        _ => environment()?.var(&args.token_env).with_context(|| {
            format!(
                "no token: {} is not set (pass --token-env VAR to use another variable, or --app-id and --private-key)",
                args.token_env
            )
        })?,
    };
    eprintln!(
        "hookflow: POST {}/repos/{repo}/dispatches event_type={} ({} bytes)",
        client.api_url(),
        event_type,
        body.len()
    );
    let outcome = rt.block_on(client.dispatch(&repo, &token, body));
    match outcome {
        Outcome::Delivered => {
            eprintln!("hookflow: GitHub accepted the dispatch (204)");
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Retry { reason, after, .. } => {
            let wait = after
                .map(|d| format!("; retry in {} s", d.as_secs()))
                .unwrap_or_default();
            eprintln!("hookflow: not delivered: {reason}{wait}");
            Ok(ExitCode::from(1))
        }
        Outcome::Failed { reason, .. } => {
            eprintln!("hookflow: not delivered: {reason}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `hookflow dispatch --relay URL`: POSTs the body, byte for byte, to a relay's endpoint and
/// reports its answer (the event id the relay stored).
#[cfg(feature = "relay")]
fn send_to_relay(url: &str, args: &DispatchArgs) -> anyhow::Result<ExitCode> {
    let parsed = url::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "https" | "http"))
        .with_context(|| {
            format!("--relay {url:?} is not an http(s) URL such as https://relay.example.com/hooks/SLUG")
        })?;
    let body = match args.body.strip_prefix('@') {
        Some(file) => read_input(file)?,
        None if args.body == "-" => read_input("-")?,
        None => args.body.clone().into_bytes(),
    };
    let mut request = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(300))
        .build()
        .context("cannot build the HTTP client")?
        .post(parsed.clone());
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("--header {h:?} is not \"Name: value\""))?;
        request = request.header(name.trim(), value.trim());
    }
    if let Some(var) = &args.api_key_env {
        let key = environment()?
            .var(var)
            .with_context(|| format!("--api-key-env names {var}, which is not set"))?;
        request = request.bearer_auth(key);
    }
    let size = body.len();
    let rt = runtime()?;
    eprintln!("hookflow: POST {parsed} ({size} bytes)");
    let (status, text) = rt
        .block_on(async {
            let response = request.body(body).send().await?;
            let status = response.status();
            Ok::<_, reqwest::Error>((status, response.text().await.unwrap_or_default()))
        })
        .with_context(|| format!("cannot reach the relay at {parsed}"))?;
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    if status.is_success() {
        match answer.get("event_id").and_then(serde_json::Value::as_str) {
            Some(id) => eprintln!(
                "hookflow: the relay stored the webhook as event {id} ({}); it dispatches it to GitHub",
                status.as_u16()
            ),
            None => eprintln!("hookflow: the relay accepted the webhook ({})", status.as_u16()),
        }
        print_out(&format!("{text}\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let message = answer
        .get("message")
        .and_then(serde_json::Value::as_str)
        .map_or_else(|| text.chars().take(500).collect(), str::to_string);
    eprintln!(
        "hookflow: the relay refused the webhook ({}): {message}",
        status.as_u16()
    );
    Ok(ExitCode::from(1))
}

/// What a relay configuration sends that no trigger takes: an endpoint whose path reaches no
/// webhook trigger (an error), or whose event types its trigger does not accept (an error for a
/// fixed type, a warning for types taken from the body).
#[cfg(feature = "relay")]
fn cross_check_relay(
    file: &Path,
    workflows: &Path,
) -> anyhow::Result<(
    Vec<hookflow_runtime::Problem>,
    Vec<hookflow_runtime::Problem>,
)> {
    use hookflow_relay::config::{EventTypeSource, RelayConfig};
    use hookflow_runtime::Problem;
    let config = RelayConfig::load(file, &Default::default())?;
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let (mut problems, mut notices) = (Vec::new(), Vec::new());
    for ep in &config.endpoints {
        let at = |message: String| Problem {
            file: file.to_path_buf(),
            line: hookflow_relay::config::endpoint_line(&text, &ep.slug),
            message,
        };
        let routes = hookflow_runtime::matching::routes(workflows, &ep.path);
        if routes.is_empty() {
            problems.push(at(format!(
                "endpoint `{}` dispatches path {}, which reaches no webhook trigger in {}: add the trigger file (a path /<file>/<trigger> needs <file>.yml with `on: {{<trigger>: …}}`), or set the endpoint's `path`",
                ep.slug,
                ep.path,
                workflows.display()
            )));
            continue;
        }
        let names = |r: &hookflow_runtime::matching::Route| {
            format!("{} trigger `{}`", r.workflow, r.trigger)
        };
        match &ep.event_type {
            EventTypeSource::Fixed(t) => {
                if !routes.iter().any(|r| r.event_types.contains(t)) {
                    let r = &routes[0];
                    problems.push(at(format!(
                        "endpoint `{}` sends event type `{t}`, which {} does not accept (event_types: [{}]): add `event_types: [{t}]` to the trigger, and `{t}` to the GitHub workflow's `repository_dispatch: types`",
                        ep.slug,
                        names(r),
                        r.event_types.join(", ")
                    )));
                }
            }
            EventTypeSource::BodyPath(p) => {
                if routes
                    .iter()
                    .all(|r| r.event_types == [hookflow_protocol::dispatch::WEBHOOK_EVENT_TYPE])
                {
                    notices.push(at(format!(
                        "endpoint `{}` takes its event type from the body (`{p}`), but {} accepts only `webhook`: list the types it sends in the trigger's `event_types` and in the GitHub workflow's `repository_dispatch: types`",
                        ep.slug,
                        names(&routes[0])
                    )));
                }
            }
        }
    }
    Ok((problems, notices))
}

fn validate(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    #[allow(unused_mut)]
    let mut v = hookflow_runtime::validate_dir(&args.workflows)?;
    #[cfg(feature = "relay")]
    if let Some(file) = &args.relay_config {
        let (problems, notices) = cross_check_relay(file, &args.workflows)?;
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
