//! Delivery to plain HTTP destinations: the exact body bytes with the sender's `Content-Type`,
//! headers that name the event, and a Standard Webhooks signature (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature`) when the destination has a secret, so the receiver
//! can check it with any Standard Webhooks library. Redirects are not followed; each attempt has
//! a timeout; answers map to the same [`Outcome`]s as GitHub's.

use std::time::Duration;

use hookflow_protocol::signature::{sign, Scheme};

use crate::outbound::github::{network_failure, wait_from_headers, Outcome};

/// The header prefix when a destination sets none: `X-Hookflow-Event-Id`, …
pub const DEFAULT_HEADER_PREFIX: &str = "X-Hookflow-";

/// Why a destination cannot be used as configured.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DestinationError {
    /// Not an http(s) URL.
    #[error("destination URL {0:?} is not an http:// or https:// URL")]
    Url(String),
    /// The secret is not `whsec_<base64>`.
    #[error("the destination's secret is not a Standard Webhooks secret (`whsec_` followed by base64, e.g. from `openssl rand -base64 32`)")]
    Secret,
    /// An extra header that cannot be sent.
    #[error("header {0:?} is not a valid HTTP header name and value")]
    Header(String),
}

/// An HTTP destination.
#[derive(Clone)]
pub struct HttpDestination {
    url: reqwest::Url,
    secret: Option<String>,
    headers: Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
    prefix: String,
}

impl std::fmt::Debug for HttpDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret, nor extra headers (they may carry keys).
        f.debug_struct("HttpDestination")
            .field("url", &self.url.as_str())
            .field("signed", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

impl HttpDestination {
    /// A destination at `url`, signing with `secret` (`whsec_<base64>`) when given, sending
    /// `headers` too, and naming the event in headers that start with `prefix`.
    pub fn new(
        url: &str,
        secret: Option<String>,
        headers: &[(String, String)],
        prefix: Option<&str>,
    ) -> Result<HttpDestination, DestinationError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| DestinationError::Url(url.into()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(DestinationError::Url(url.into()));
        }
        if let Some(s) = &secret {
            // Signing an empty body proves the key decodes.
            sign(&Scheme::StandardWebhooks, b"", s.as_bytes(), 0, "probe")
                .map_err(|_| DestinationError::Secret)?;
        }
        let headers = headers
            .iter()
            .map(|(k, v)| {
                Ok((
                    reqwest::header::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|_| DestinationError::Header(k.clone()))?,
                    reqwest::header::HeaderValue::from_str(v)
                        .map_err(|_| DestinationError::Header(k.clone()))?,
                ))
            })
            .collect::<Result<_, _>>()?;
        Ok(HttpDestination {
            url: parsed,
            secret,
            headers,
            prefix: prefix.unwrap_or(DEFAULT_HEADER_PREFIX).to_string(),
        })
    }

    /// Where it goes.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }
}

/// One event as an HTTP destination receives it.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    /// The event's id (also the Standard Webhooks `webhook-id`, stable across retries).
    pub event_id: &'a str,
    /// The endpoint it came in on.
    pub endpoint: &'a str,
    /// Its event type.
    pub event_type: &'a str,
    /// The sender's `Content-Type`.
    pub content_type: Option<&'a str>,
    /// The exact body bytes.
    pub body: &'a [u8],
    /// Now, in Unix seconds (the signature's timestamp).
    pub now_s: i64,
}

/// Sends events to HTTP destinations.
#[derive(Debug, Clone)]
pub struct Forwarder {
    http: reqwest::Client,
}

impl Forwarder {
    /// A forwarder whose attempts time out after `timeout`.
    pub fn new(timeout: Duration) -> Result<Forwarder, reqwest::Error> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("hookflow/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Forwarder { http })
    }

    /// Sends `message` to `to` once.
    pub async fn send(&self, to: &HttpDestination, message: &Message<'_>) -> Outcome {
        let p = &to.prefix;
        let mut request = self
            .http
            .post(to.url.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                message.content_type.unwrap_or("application/octet-stream"),
            )
            .header(format!("{p}Event-Id"), message.event_id)
            .header(format!("{p}Endpoint"), message.endpoint)
            .header(format!("{p}Event-Type"), header_text(message.event_type));
        for (k, v) in &to.headers {
            request = request.header(k, v);
        }
        if let Some(secret) = &to.secret {
            match sign(
                &Scheme::StandardWebhooks,
                message.body,
                secret.as_bytes(),
                message.now_s,
                message.event_id,
            ) {
                Ok(headers) => {
                    for (k, v) in headers {
                        request = request.header(k, v);
                    }
                }
                Err(e) => {
                    return Outcome::Failed {
                        status: 0,
                        reason: format!("cannot sign for {}: {e}", to.url()),
                    }
                }
            }
        }
        let sent = request.body(message.body.to_vec()).send().await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return network_failure(to.url(), &e),
        };
        let status = response.status().as_u16();
        let wait = wait_from_headers(response.headers(), std::time::SystemTime::now());
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // Only the start of an answer is read and kept (it goes into logs and dead letters): a
        // receiver that answers without end holds nothing.
        let text = answer_start(response).await;
        let url = to.url();
        match status {
            200..=299 => Outcome::Delivered,
            300..=399 => Outcome::Failed {
                status,
                reason: format!(
                    "{url} answered {status}, a redirect{}; redirects are not followed: configure the final URL",
                    location.map(|l| format!(" to {l}")).unwrap_or_default()
                ),
            },
            408 | 429 | 500..=599 => Outcome::Retry {
                reason: format!("{url} answered {status}: {text}"),
                after: wait,
                status: Some(status),
            },
            _ => Outcome::Failed {
                status,
                reason: format!("{url} answered {status}: {text}"),
            },
        }
    }
}

/// A header value for text that may come from the sender (an event type read from the body):
/// as it is when a header can carry it, percent-encoded when it holds line breaks or other
/// bytes a header cannot (which would otherwise fail every attempt, or split the header).
fn header_text(text: &str) -> reqwest::header::HeaderValue {
    reqwest::header::HeaderValue::from_str(text).unwrap_or_else(|_| {
        let encoded =
            percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        reqwest::header::HeaderValue::from_str(&encoded)
            .unwrap_or(reqwest::header::HeaderValue::from_static(""))
    })
}

/// How much of an answer is read.
const ANSWER_BYTES: usize = 4096;

/// The first characters of an answer's body (at most 300, from at most [`ANSWER_BYTES`]).
async fn answer_start(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < ANSWER_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(ANSWER_BYTES);
    String::from_utf8_lossy(&bytes).chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::header_text;

    #[test]
    fn sender_text_cannot_break_a_header() {
        assert_eq!(header_text("invoice.paid"), "invoice.paid");
        assert_eq!(
            header_text("a\r\nX-Injected: 1"),
            "a%0D%0AX%2DInjected%3A%201"
        );
    }
}
