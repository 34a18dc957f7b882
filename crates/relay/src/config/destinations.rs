//! An endpoint's destinations as configured: where each sends (a repository or a plain HTTP
//! endpoint), which events it takes (`event_types` globs), how it batches, and the `transform`
//! that projects the body it is sent. Values only: what a destination is sent is
//! [`crate::destinations`]'s.

use crate::store::Destination;
use crate::store::TokenSource;
use hookflow_protocol::dispatch::Repo;
use hookflow_protocol::jsonpath::Query;
use serde_json::Map;
use serde_json::Value;

/// Where one destination sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A repository's `repository_dispatch`.
    Repo {
        /// The repository.
        repo: Repo,
        /// Its credential.
        auth: EndpointAuth,
    },
    /// A plain HTTP endpoint.
    Http {
        /// `https://…` (or `http://` inside a closed network).
        url: String,
        /// The variable holding its Standard Webhooks secret (`whsec_…`), when signed.
        secret_env: Option<String>,
        /// Extra headers sent with every event.
        headers: Vec<(String, String)>,
        /// The prefix of the headers that name the event (default `X-Hookflow-`).
        header_prefix: Option<String>,
    },
}

/// One configured destination of an endpoint.
#[derive(Debug, Clone)]
pub struct DestinationConfig {
    /// Where it sends.
    pub target: Target,
    /// Glob patterns of the event types it takes (`invoice.*`); empty: every event.
    pub event_types: Vec<String>,
    /// A JSON projection of the body sent instead of the body as received.
    pub transform: Option<Transform>,
    /// Events waiting for a repository's rate limit go together in one dispatch; `None`: one
    /// dispatch per event (the default).
    pub batching: Option<Batching>,
}

/// `batching: {mode: adaptive, max_events, max_bytes}` of a repository destination: when its
/// events queue behind GitHub's dispatch rate limit, the next slot carries as many of them as
/// fit (docs/design/store.md, "Batching").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// The most events in one dispatch.
    pub max_events: usize,
    /// The most bytes of one dispatch (GitHub's own cap is 64 KB).
    pub max_bytes: usize,
}

impl Batching {
    /// `max_events` when not given.
    pub const DEFAULT_EVENTS: usize = 100;
}

impl DestinationConfig {
    /// Its name in the store, dead letters and metrics: `repo:OWNER/NAME` or `http:<url>`.
    pub fn key(&self) -> String {
        self.store_destination().key()
    }

    /// Whether it takes events of this type.
    pub fn takes(&self, event_type: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|p| glob(p, event_type))
    }

    /// The delivery the store keeps for it.
    pub fn store_destination(&self) -> Destination {
        match &self.target {
            Target::Repo { repo, auth } => Destination::Repo {
                repo: repo.to_string(),
                token: match auth {
                    EndpointAuth::TokenEnv(name) => TokenSource::Env(name.clone()),
                    EndpointAuth::App => TokenSource::App,
                },
            },
            Target::Http { url, .. } => Destination::Http { url: url.clone() },
        }
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters (none too) and
/// `?` for one character; everything else stands for itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative, with one backtrack point: linear in practice, never exponential.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A destination's `transform:`: output field names, each with the JSONPath (over the JSON
/// body) of its value. A path that names one value gives it, or `null` when absent; a path that
/// can select several gives a list.
#[derive(Debug, Clone)]
pub struct Transform {
    fields: Vec<(String, Query)>,
}

/// Why a transform cannot be used as written, or on a body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    /// A path that does not parse.
    #[error("transform field `{field}`: {message}")]
    Path {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// No fields.
    #[error("transform needs at least one field, such as `id: $.id`")]
    Empty,
    /// The body is not JSON.
    #[error("the destination transforms the body with JSONPath, and this body is not JSON ({0})")]
    NotJson(String),
}

impl Transform {
    /// Compiles `name: $.json.path` pairs.
    pub fn parse(fields: &[(String, String)]) -> Result<Transform, TransformError> {
        if fields.is_empty() {
            return Err(TransformError::Empty);
        }
        let fields = fields
            .iter()
            .map(|(name, path)| {
                Query::parse(path)
                    .map(|q| (name.clone(), q))
                    .map_err(|e| TransformError::Path {
                        field: name.clone(),
                        message: e.to_string(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Transform { fields })
    }

    /// The projection of a JSON `body`, as compact JSON.
    pub fn apply(&self, body: &[u8]) -> Result<Vec<u8>, TransformError> {
        let doc: Value =
            serde_json::from_slice(body).map_err(|e| TransformError::NotJson(e.to_string()))?;
        let mut out = Map::new();
        for (name, query) in &self.fields {
            out.insert(name.clone(), query.select(&doc).unwrap_or(Value::Null));
        }
        Ok(Value::Object(out).to_string().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, t, want) in [
            ("invoice.*", "invoice.paid", true),
            ("invoice.*", "invoice.", true),
            ("invoice.*", "customer.created", false),
            ("*", "", true),
            ("*.created", "customer.subscription.created", true),
            ("push", "push", true),
            ("push", "pushed", false),
            ("p?sh", "push", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("", "", true),
            ("", "x", false),
        ] {
            assert_eq!(glob(p, t), want, "{p} ~ {t}");
        }
        // A hostile pattern stays linear.
        let long = "a".repeat(10_000);
        assert!(!glob("*a*a*a*a*a*a*a*a*b", &long));
    }
}

/// How an endpoint's events authenticate to GitHub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointAuth {
    /// A token in this environment variable (`token_env`).
    TokenEnv(String),
    /// The relay's GitHub App (`auth: app`).
    App,
}
