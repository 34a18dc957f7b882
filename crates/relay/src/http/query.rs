//! The relay's own query parameters (webhook2github's `__token`, `__response_*`), split from
//! the query the workflow sees: the same rule on every route.

/// The compatible route's own query parameters (webhook2github's): never forwarded.
#[derive(Debug, Default)]
pub(super) struct RelayParams {
    /// `__token`: the GitHub token.
    pub(super) token: Option<String>,
    /// `__response_code`.
    pub(super) response_code: Option<String>,
    /// `__response_content_type`.
    pub(super) response_content_type: Option<String>,
    /// `__response_body`.
    pub(super) response_body: Option<String>,
}

impl RelayParams {
    /// Splits a query string into the relay's own parameters and the rest (raw `k=v` pairs,
    /// as sent), which is what the workflow sees: the same rule on every route.
    pub(super) fn split(query: Option<&str>) -> (RelayParams, Vec<&str>) {
        let mut relay = RelayParams::default();
        let mut kept = Vec::new();
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let key = pair.split('=').next().unwrap_or_default();
            let key = form_urlencoded::parse(key.as_bytes())
                .next()
                .map(|(k, _)| k.into_owned())
                .unwrap_or_default();
            if let Some(slot) = relay.slot(&key) {
                let value = form_urlencoded::parse(pair.as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                *slot = Some(value);
            } else {
                kept.push(pair);
            }
        }
        (relay, kept)
    }

    /// The slot of a relay parameter, `None` for a parameter the workflow should see.
    fn slot(&mut self, key: &str) -> Option<&mut Option<String>> {
        match key {
            "__token" => Some(&mut self.token),
            "__response_code" => Some(&mut self.response_code),
            "__response_content_type" => Some(&mut self.response_content_type),
            "__response_body" => Some(&mut self.response_body),
            _ => None,
        }
    }
}
