/// A received request, as an event keeps it: the method, the path with the query kept, the
/// forwarded headers (lowercase names, credentials already removed), the exact body bytes.
use hookflow_protocol::payload::Incoming as Request;

/// Where the GitHub token of an event comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TokenSource {
    /// An environment variable of the relay (configured endpoints). Only the name is stored.
    Env(String),
    /// A token sent with the request (the compatible route). Stored while the event waits, and
    /// erased once it is delivered (the event log keeps the delivery without it) or purged.
    Inline(String),
    /// The relay's GitHub App: an installation token minted at delivery. Nothing is stored.
    App,
}

impl TokenSource {
    fn encode(&self) -> String {
        match self {
            TokenSource::Env(n) => format!("env:{n}"),
            TokenSource::Inline(t) => format!("inline:{t}"),
            TokenSource::App => "app:".into(),
        }
    }

    fn decode(s: &str) -> TokenSource {
        match s.split_once(':') {
            Some(("env", n)) => TokenSource::Env(n.to_string()),
            Some(("inline", t)) => TokenSource::Inline(t.to_string()),
            Some(("app", _)) => TokenSource::App,
            _ => TokenSource::Inline(String::new()),
        }
    }

    /// The credential's part of a rate-limit lane: a fingerprint of a token that came with the
    /// request, the name of the endpoint's token variable, or the app.
    pub fn lane_key(&self) -> String {
        match self {
            TokenSource::Inline(t) => hookflow_protocol::credentials::fingerprint(t),
            TokenSource::Env(name) => format!("env:{name}"),
            TokenSource::App => "app".into(),
        }
    }
}

/// Where one delivery of an event goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// A repository's `repository_dispatch`, sent with this credential.
    Repo {
        /// `owner/name`.
        repo: String,
        /// The GitHub token to dispatch with.
        token: TokenSource,
    },
    /// A plain HTTP endpoint. Its secret, extra headers and transform are looked up in the
    /// running configuration by the event's endpoint and [`Destination::key`].
    Http {
        /// The URL the body is posted to.
        url: String,
    },
}

impl Destination {
    /// What names the destination in the store, in dead letters and in the configuration:
    /// `repo:OWNER/NAME` or `http:<url>`.
    pub fn key(&self) -> String {
        match self {
            Destination::Repo { repo, .. } => format!("repo:{repo}"),
            Destination::Http { url } => format!("http:{url}"),
        }
    }

    /// The credential column: a repository's token source, nothing for HTTP.
    pub(super) fn token_column(&self) -> Option<String> {
        match self {
            Destination::Repo { token, .. } => Some(token.encode()),
            Destination::Http { .. } => None,
        }
    }

    /// Reads the `destination` and `token` columns back.
    pub(super) fn from_columns(destination: &str, token: Option<&str>) -> Destination {
        match destination.split_once(':') {
            Some(("http", url)) => Destination::Http { url: url.into() },
            Some(("repo", repo)) => Destination::Repo {
                repo: repo.into(),
                token: TokenSource::decode(token.unwrap_or_default()),
            },
            // Not written by any version: a repository that does not parse makes a dead
            // letter that names it.
            _ => Destination::Repo {
                repo: destination.into(),
                token: TokenSource::decode(token.unwrap_or_default()),
            },
        }
    }

    /// The rate-limit lane: a repository with its credential (events carrying strangers'
    /// tokens never spend the slots of an authenticated sender's), or the URL.
    pub fn lane(&self) -> String {
        match self {
            Destination::Repo { repo, token } => format!("repo:{repo} {}", token.lane_key()),
            Destination::Http { url } => format!("http:{url}"),
        }
    }
}

/// What an event carries to its destinations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// The request as the relay received it (stored from schema 4 on): each destination
    /// builds what it sends from it at delivery.
    Request(Request),
    /// The dispatch body built when the event was accepted (events stored before schema 4,
    /// which have one repository destination): sent as it is.
    Dispatch(Vec<u8>),
}

impl Payload {
    /// How it is stored: the kind, the bytes, and the request's method, path and headers.
    pub(super) fn columns(
        &self,
    ) -> (
        &'static str,
        &[u8],
        Option<&str>,
        Option<&str>,
        Option<String>,
    ) {
        match self {
            Payload::Dispatch(b) => ("dispatch", b, None, None, None),
            Payload::Request(r) => (
                "request",
                &r.body,
                Some(&r.method),
                Some(&r.path),
                serde_json::to_string(&r.headers).ok(),
            ),
        }
    }

    /// Reads the columns back.
    pub(super) fn from_columns(
        kind: &str,
        bytes: Vec<u8>,
        method: Option<String>,
        path: Option<String>,
        headers: Option<&str>,
    ) -> Payload {
        if kind != "request" {
            return Payload::Dispatch(bytes);
        }
        let headers = headers
            .and_then(|h| serde_json::from_str(h).ok())
            .unwrap_or_default();
        Payload::Request(Request {
            method: method.unwrap_or_default(),
            path: path.unwrap_or_default(),
            headers,
            body: bytes,
        })
    }

    /// The bytes stored.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Payload::Dispatch(b) => b,
            Payload::Request(r) => &r.body,
        }
    }
}

/// An event as stored: what every one of its deliveries sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Sortable unique id (ULID).
    pub id: String,
    /// Milliseconds since the epoch.
    pub received_at: i64,
    /// The endpoint slug, or `compat`.
    pub source: String,
    /// The event type (the dispatch `event_type`).
    pub event_type: String,
    /// The request, or an old event's dispatch body.
    pub payload: Payload,
}

/// An event to store, with one delivery per destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The event.
    pub event: Event,
    /// Where it goes: one delivery each, in this order. At least one.
    pub destinations: Vec<Destination>,
    /// The sender's delivery id (`X-GitHub-Delivery`, `webhook-id`, `Idempotency-Key`, …),
    /// scoped to the source: a second event with the same key within a day is not stored again.
    pub dedupe_key: Option<String>,
}

/// What became of an event given to [`Store::insert`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Stored.
    New,
    /// The sender sent it before: not stored again; this is the first event's id.
    Duplicate(String),
}

/// How long a delivery id is remembered for de-duplication.
pub const DEDUPE_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// The sender's own delivery id in a de-duplication key (`hooks:<slug>:<header>:<value>`,
/// `compat:…:<header>:<value>`): what the event log finds an event by.
pub(crate) fn sender_delivery_id(dedupe_key: &str) -> Option<&str> {
    hookflow_protocol::payload::DELIVERY_ID_HEADERS
        .iter()
        .find_map(|h| {
            let marker = format!(":{h}:");
            dedupe_key
                .find(&marker)
                .map(|i| &dedupe_key[i + marker.len()..])
        })
        .filter(|v| !v.is_empty())
}
