//! `hookflow dispatch`: one repository_dispatch by hand, to GitHub or through a relay.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::common::runtime;
use crate::cmd::{environment, print_out, read_input};

#[derive(clap::Args)]
pub(crate) struct DispatchArgs {
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

pub(crate) fn dispatch(args: DispatchArgs) -> anyhow::Result<ExitCode> {
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
pub(crate) fn send_to_relay(url: &str, args: &DispatchArgs) -> anyhow::Result<ExitCode> {
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
