//! `hookflow event`: an event file built from a request described as for curl.

use std::process::ExitCode;

use anyhow::Context as _;

use super::{print_out, read_input};

#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  hookflow event -H 'Content-Type: application/json' -d @body.json /stripe/webhook/events > event.json\n  hookflow run --event event.json --json"
)]
pub(crate) struct EventArgs {
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

pub(crate) fn event(args: EventArgs) -> anyhow::Result<ExitCode> {
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
