//! Which parts of a request are credentials, so that both halves treat them alike: the relay
//! never forwards the ones meant for itself or for GitHub, and the runtime masks the ones a
//! sender shares with the workflow (forwarded so the workflow can check them).
//!
//! A name-based guess (`x-anything-token`) would let a sender choose what the runner masks, and
//! masking `true` or `webhook` blanks the step's logs; so the lists are explicit, and short values
//! are never masked.

/// Request headers that authenticate to the relay or to GitHub: never put in `client_payload`.
pub const STRIPPED_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-github-authorization",
];

/// Headers whose value is a secret the sender shares with the receiver (forwarded, so the
/// workflow can check it, and masked in the runner's logs).
pub const SHARED_SECRET_HEADERS: [&str; 8] = [
    "x-gitlab-token",
    "x-webhook-secret",
    "x-api-key",
    "api-key",
    "x-auth-token",
    "x-access-token",
    "private-token",
    "x-shopify-access-token",
];

/// Values shorter than this are never masked: they cannot be a real secret, and masking them
/// (`true`, `push`) would blank unrelated text in the logs.
pub const MIN_MASKED_CHARS: usize = 8;

/// Whether the relay drops this header (any case) before building `client_payload`.
pub fn is_stripped_header(name: &str) -> bool {
    STRIPPED_HEADERS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
}

/// Whether a header's value is a credential to mask wherever it appears.
pub fn is_credential_header(name: &str) -> bool {
    is_stripped_header(name)
        || SHARED_SECRET_HEADERS
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
}

/// A short, one-way name for a credential (SHA-256, first 16 hex digits): enough to tell
/// tokens apart in a key or a log, useless to anyone who reads it.
pub fn fingerprint(secret: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(secret.as_bytes());
    hex::encode(&digest[..8])
}

/// Whether text can be a token (GitHub's, an API key): printable ASCII without spaces. Anything
/// else (a line break above all) could not travel in a header, and would be retried as if the
/// network had failed.
pub fn is_token_text(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())
}

/// Whether a value is long enough to be masked.
pub fn worth_masking(value: &str) -> bool {
    value.trim().chars().count() >= MIN_MASKED_CHARS
}

/// Whether `given` is `expected`, compared in constant time: only the length can show in the
/// time taken. Every secret, token and signature is compared through here.
pub fn same(expected: &[u8], given: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    expected.len() == given.len() && bool::from(expected.ct_eq(given))
}

/// Whether `given` is one of `candidates`: each compared in full with [`same`], so the time
/// taken does not tell which one was close.
pub fn one_of<'a>(candidates: impl IntoIterator<Item = &'a [u8]>, given: &[u8]) -> bool {
    candidates
        .into_iter()
        .fold(false, |found, c| found | same(c, given))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_lists_not_guesses() {
        assert!(is_stripped_header("Authorization"));
        assert!(is_stripped_header("X-GitHub-Authorization"));
        assert!(
            !is_stripped_header("x-gitlab-token"),
            "forwarded for the workflow to check"
        );
        assert!(is_credential_header("X-Gitlab-Token"));
        assert!(is_credential_header("cookie"));
        assert!(
            !is_credential_header("x-a-token"),
            "a sender cannot invent credential headers"
        );
        assert!(
            !is_credential_header("x-hub-signature-256"),
            "a signature is not a secret"
        );
        assert!(!worth_masking("true"));
        assert!(!worth_masking("  short  "));
        assert!(worth_masking("ghp_0123456789"));
    }
}
