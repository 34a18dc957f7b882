//! A `repository_dispatch` request as GitHub's API takes it (DESIGN §2): the target
//! repository, the `{"event_type", "client_payload"}` body, and GitHub's limits on both.
//!
//! Checking the limits here, before anything is sent or stored, is what lets the relay refuse a
//! webhook at its door instead of accepting it and losing it later. Sending is not this module's
//! job (the relay's GitHub client does it).

use serde_json::Value;

/// The event name GitHub gives a dispatched event (`$GITHUB_EVENT_NAME`).
pub const REPOSITORY_DISPATCH: &str = "repository_dispatch";
/// The `event_type` a webhook relay sends unless told otherwise.
pub const WEBHOOK_EVENT_TYPE: &str = "webhook";

/// GitHub's limit on `event_type`, in characters.
pub const MAX_EVENT_TYPE_CHARS: usize = 100;
/// GitHub's limit on `client_payload` top-level properties.
pub const MAX_PAYLOAD_PROPERTIES: usize = 10;
/// The whole JSON request must be under this many bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// A repository as `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repo {
    /// The owner (user or organisation).
    pub owner: String,
    /// The repository name.
    pub name: String,
}

impl Repo {
    /// Parses `owner/name`.
    pub fn parse(s: &str) -> Result<Repo, RepoError> {
        let valid = |p: &str| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        match s.split_once('/') {
            Some((o, n)) if valid(o) && valid(n) => Ok(Repo {
                owner: o.to_string(),
                name: n.to_string(),
            }),
            _ => Err(RepoError(s.to_string())),
        }
    }
}

/// Text that is not `OWNER/REPO`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a repository; expected OWNER/REPO such as octo-org/hooks")]
pub struct RepoError(pub String);

impl std::str::FromStr for Repo {
    type Err = RepoError;
    fn from_str(s: &str) -> Result<Repo, RepoError> {
        Repo::parse(s)
    }
}

impl std::fmt::Display for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// A dispatch GitHub would refuse, found before sending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// `event_type` is empty or too long.
    #[error("event_type must be 1 to {MAX_EVENT_TYPE_CHARS} characters, got {0}")]
    EventType(usize),
    /// `event_type` holds a control character (a line break would let a sender write workflow
    /// commands wherever the type is printed).
    #[error("event_type must not contain control characters (found U+{0:04X})")]
    EventTypeControl(u32),
    /// `client_payload` is not an object.
    #[error("client_payload must be a JSON object")]
    NotObject,
    /// Too many top-level properties.
    #[error("client_payload has {0} top-level properties; GitHub accepts at most {MAX_PAYLOAD_PROPERTIES}")]
    TooManyProperties(usize),
    /// The request is too large.
    #[error("the dispatch request is {0} bytes; GitHub accepts under {MAX_REQUEST_BYTES}")]
    TooLarge(usize),
}

/// The JSON request body of a dispatch.
pub fn dispatch_body(event_type: &str, client_payload: &Value) -> Vec<u8> {
    serde_json::to_vec(
        &serde_json::json!({"event_type": event_type, "client_payload": client_payload}),
    )
    .unwrap_or_default()
}

/// Checks an event type alone: 1 to [`MAX_EVENT_TYPE_CHARS`] characters, none a control.
pub fn check_event_type(event_type: &str) -> Result<(), LimitError> {
    let chars = event_type.chars().count();
    if chars == 0 || chars > MAX_EVENT_TYPE_CHARS {
        return Err(LimitError::EventType(chars));
    }
    if let Some(c) = event_type.chars().find(|c| c.is_control()) {
        return Err(LimitError::EventTypeControl(c as u32));
    }
    Ok(())
}

/// Checks GitHub's limits; returns the request body on success.
pub fn check_limits(event_type: &str, client_payload: &Value) -> Result<Vec<u8>, LimitError> {
    check_event_type(event_type)?;
    let Value::Object(map) = client_payload else {
        return Err(LimitError::NotObject);
    };
    if map.len() > MAX_PAYLOAD_PROPERTIES {
        return Err(LimitError::TooManyProperties(map.len()));
    }
    let body = dispatch_body(event_type, client_payload);
    if body.len() >= MAX_REQUEST_BYTES {
        return Err(LimitError::TooLarge(body.len()));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn repo() -> Repo {
        Repo::parse("octo/hooks").expect("repo")
    }

    #[test]
    fn limits() {
        assert!(check_limits("webhook", &json!({"a": 1})).is_ok());
        assert_eq!(check_limits("", &json!({})), Err(LimitError::EventType(0)));
        assert_eq!(
            check_limits(&"x".repeat(101), &json!({})),
            Err(LimitError::EventType(101))
        );
        let eleven: serde_json::Map<String, Value> =
            (0..11).map(|i| (format!("k{i}"), json!(i))).collect();
        assert_eq!(
            check_limits("w", &Value::Object(eleven)),
            Err(LimitError::TooManyProperties(11))
        );
        assert!(matches!(
            check_limits("w", &json!({"b": "x".repeat(70_000)})),
            Err(LimitError::TooLarge(_))
        ));
        assert_eq!(check_limits("w", &json!([])), Err(LimitError::NotObject));
        assert_eq!(
            check_limits("order.paid\n::error::x", &json!({})),
            Err(LimitError::EventTypeControl(0x0a))
        );
        assert!(check_limits("order.paid", &json!({})).is_ok());
    }

    #[test]
    fn repo_names() {
        assert_eq!(repo().to_string(), "octo/hooks");
        assert!(Repo::parse("octo").is_err());
        assert!(Repo::parse("octo/../x").is_err());
        assert!(Repo::parse("a/b/c").is_err());
    }
}
