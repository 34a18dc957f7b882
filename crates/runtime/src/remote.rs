//! Bodies a relay keeps and names by reference (`client_payload.body_ref`,
//! [`hookflow_protocol::body_ref`]): fetched once, checked against the size and SHA-256 the
//! dispatch names, then read exactly as an inline body.
//!
//! The transfer is the runner's `curl` (on every GitHub-hosted runner, and asked for by the
//! error when missing): it brings HTTPS with the system's roots, timeouts, retries and
//! compressed transfers without growing this binary by an HTTP and TLS stack. The signed URL
//! goes to `curl` on its standard input, never on its command line.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use hookflow_protocol::body_ref::BodyRef;
use sha2::{Digest as _, Sha256};

/// Where and how bodies by reference are fetched.
#[derive(Debug, Clone)]
pub struct Fetcher {
    /// `host[:port]` that may be fetched over plain `http` (tests, relays in a closed
    /// network); any host may be fetched over `https`.
    pub allowed_hosts: Vec<String>,
    /// Where the download is written while it is checked.
    pub dir: PathBuf,
    /// Seconds to connect.
    pub connect_timeout: u32,
    /// Seconds for the whole transfer.
    pub max_time: u32,
    /// Retries of a failed transfer (timeouts, 5xx, 429).
    pub retries: u32,
}

impl Default for Fetcher {
    fn default() -> Self {
        Fetcher {
            allowed_hosts: Vec::new(),
            dir: std::env::temp_dir(),
            connect_timeout: 10,
            max_time: 120,
            retries: 3,
        }
    }
}

/// Why a body could not be fetched; the message names the URL without its signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot fetch the body at {url}: {reason}")]
pub struct FetchError {
    /// The URL without its query.
    pub url: String,
    /// Why.
    pub reason: String,
}

impl Fetcher {
    /// Fetches the body `r` names, refusing one over `limit` bytes, and checks it.
    pub fn fetch(&self, r: &BodyRef, limit: u64) -> Result<Vec<u8>, FetchError> {
        let fail = |reason: String| FetchError {
            url: r.display_url().to_string(),
            reason,
        };
        let (scheme, host) = scheme_and_host(&r.url)
            .ok_or_else(|| fail("the URL is not an absolute http(s) URL".into()))?;
        let allowed = self
            .allowed_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host));
        match scheme {
            "https" => {}
            "http" if allowed => {}
            "http" => {
                return Err(fail(format!(
                    "only https URLs are fetched; allow {host} with --body-hosts (the action's body-hosts input) if it is a relay you run over plain http"
                )))
            }
            other => return Err(fail(format!("the scheme {other:?} is not fetched"))),
        }
        if r.size > limit {
            return Err(fail(format!(
                "the body is {} bytes, over the {limit}-byte limit (--max-body-bytes; the action's max-body-bytes input)",
                r.size
            )));
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| fail(format!("cannot create {}: {e}", self.dir.display())))?;
        let file = self.dir.join(format!(
            "hookflow-body-ref-{}-{}.bin",
            std::process::id(),
            r.sha256.get(..16).unwrap_or("body")
        ));
        let result = self.download(r, &file, limit).and_then(|()| {
            let bytes = std::fs::read(&file)
                .map_err(|e| format!("cannot read the download {}: {e}", file.display()))?;
            check(r, &bytes)?;
            Ok(bytes)
        });
        let _ = std::fs::remove_file(&file);
        result.map_err(fail)
    }

    fn download(&self, r: &BodyRef, file: &std::path::Path, limit: u64) -> Result<(), String> {
        let protocols = if r.url.starts_with("https:") {
            "=https"
        } else {
            "=http"
        };
        let mut child = Command::new("curl")
            .args(["--silent", "--show-error", "--fail", "--compressed"])
            .args(["--proto", protocols, "--max-redirs", "0"])
            .args(["--connect-timeout", &self.connect_timeout.to_string()])
            .args(["--max-time", &self.max_time.to_string()])
            .args(["--retry", &self.retries.to_string(), "--retry-delay", "1"])
            .args(["--max-filesize", &limit.max(1).to_string()])
            .arg("--output")
            .arg(file)
            .args(["--config", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "curl is not installed on this runner; install it (apt-get install curl) to read bodies by reference".to_string()
                }
                _ => format!("cannot start curl: {e}"),
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            // The URL goes in curl's config syntax: quoted, with `\` and `"` escaped.
            let quoted = r.url.replace('\\', "\\\\").replace('"', "\\\"");
            writeln!(stdin, "url = \"{quoted}\"")
                .map_err(|e| format!("cannot hand the URL to curl: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("curl did not finish: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let said = String::from_utf8_lossy(&out.stderr);
        let said = hookflow_protocol::body_ref::without_query(said.trim()).to_string();
        Err(match out.status.code() {
            Some(22) if said.contains(" 403") => {
                "the relay refused the URL (403): its signature is not valid or it has expired; re-run the workflow soon after the dispatch, or replay the event from the relay".into()
            }
            Some(22) if said.contains(" 404") => {
                "the relay no longer has this body (404): it was pruned after the relay's retention period; replay the event from the relay if it still has it".into()
            }
            Some(63) => format!("the body is larger than the {limit}-byte limit"),
            Some(28) => format!("timed out ({said})"),
            _ => format!("curl failed: {said}"),
        })
    }
}

/// Checks fetched bytes against the reference's size and digest.
pub fn check(r: &BodyRef, bytes: &[u8]) -> Result<(), String> {
    if bytes.len() as u64 != r.size {
        return Err(format!(
            "got {} bytes where the dispatch names {}: the body was changed or cut on the way",
            bytes.len(),
            r.size
        ));
    }
    let digest = hex::encode(Sha256::digest(bytes));
    if digest != r.sha256 {
        return Err(format!(
            "the SHA-256 of what was served ({digest}) is not the one the dispatch names ({}): the body was changed on the way",
            r.sha256
        ));
    }
    Ok(())
}

/// The scheme and `host[:port]` of an absolute URL.
fn scheme_and_host(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    // No credentials in the authority: `user@host` could hide the real host.
    if host.is_empty() || host.contains('@') {
        return None;
    }
    Some((scheme, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(url: &str, body: &[u8]) -> BodyRef {
        BodyRef {
            url: url.into(),
            size: body.len() as u64,
            sha256: hex::encode(Sha256::digest(body)),
            content_encoding: "identity".into(),
            expires_at: String::new(),
        }
    }

    #[test]
    fn only_https_or_allowed_hosts() {
        let f = Fetcher {
            allowed_hosts: vec!["127.0.0.1:9".into()],
            ..Fetcher::default()
        };
        let err = f
            .fetch(
                &reference("http://relay.example/bodies/x?sig=secret", b"a"),
                10,
            )
            .unwrap_err();
        assert_eq!(err.url, "http://relay.example/bodies/x");
        assert!(err.reason.contains("only https URLs"), "{err}");
        assert!(!err.to_string().contains("secret"));
        let err = f
            .fetch(&reference("http://user@127.0.0.1:9/bodies/x", b"a"), 10)
            .unwrap_err();
        assert!(err.reason.contains("not an absolute"), "{err}");
        let err = f
            .fetch(&reference("file:///etc/passwd", b"a"), 10)
            .unwrap_err();
        assert!(
            err.reason.contains("not an absolute") || err.reason.contains("scheme"),
            "{err}"
        );
        let mut big = reference("https://relay.example/bodies/x", b"a");
        big.size = 11;
        assert!(f
            .fetch(&big, 10)
            .unwrap_err()
            .reason
            .contains("over the 10-byte limit"));
    }

    #[test]
    fn fetched_bytes_are_checked() {
        let r = reference("https://x/bodies/e", b"hello");
        assert_eq!(check(&r, b"hello"), Ok(()));
        assert!(check(&r, b"hell").unwrap_err().contains("got 4 bytes"));
        assert!(check(&r, b"HELLO").unwrap_err().contains("SHA-256"));
    }
}
