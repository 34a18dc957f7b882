//! Who may send: an endpoint's API keys and its sender's signature, checked in constant time;
//! bearer tokens read from a header.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use hookflow_protocol::credentials;

use crate::config::Endpoint;
use hookflow_protocol::signature as verify;
use hookflow_protocol::Environment;

use super::accept::header_object;
use super::answer::Refused;

/// A token from `scheme token` or a bare `token`.
pub(super) fn bearer(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?.trim();
    let token = text.split_whitespace().last()?;
    (!token.is_empty()).then(|| token.to_string())
}

/// An endpoint's API keys (`Authorization: Bearer`), checked from the headers alone.
pub(super) fn check_api_key(
    ep: &Endpoint,
    env: &Environment,
    headers: &HeaderMap,
) -> Result<(), Refused> {
    if let Some(var) = &ep.api_keys_env {
        let keys = env.var(var).unwrap_or_default();
        let keys: Vec<&str> = keys
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .collect();
        if keys.is_empty() {
            tracing::error!(endpoint = %ep.slug, variable = %var, "api_keys_env is not set; refusing requests");
            return Err(Refused::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "this endpoint is not configured correctly",
            ));
        }
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .trim();
        // Compare with every key, so the time taken does not tell which one is close.
        let ok = credentials::one_of(keys.iter().map(|k| k.as_bytes()), given.as_bytes());
        if !ok {
            return Err(Refused::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong API key (Authorization: Bearer <key>)",
            ));
        }
    }
    Ok(())
}

/// An endpoint's signature check over the exact body; nothing is stored when it fails.
pub(super) fn check_signature(
    ep: &Endpoint,
    env: &Environment,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Refused> {
    if let Some(v) = &ep.verify {
        let Some(secret) = env.var(&v.secret_env) else {
            tracing::error!(endpoint = %ep.slug, variable = %v.secret_env, "verify.secret_env is not set; refusing requests");
            return Err(Refused::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "this endpoint is not configured correctly",
            ));
        };
        let map = header_object(headers, |_| false);
        if let Err(e) = verify::verify(
            &v.scheme,
            &map,
            body,
            secret.as_bytes(),
            env.now(),
            v.tolerance,
        ) {
            tracing::warn!(endpoint = %ep.slug, error = %e, "signature check failed");
            return Err(Refused::new(
                StatusCode::UNAUTHORIZED,
                format!("{} signature check failed: {e}", v.scheme),
            ));
        }
    }
    Ok(())
}
