//! The relay's HTTP side (axum): routes, authentication, and the answer. A webhook is answered
//! only after its event is committed to the store; anything that would not be delivered (too
//! large, bad signature, no token) is refused before it is stored.
//!
//! Routes, top to bottom:
//! - `GET /healthz`: 200 while the process serves (liveness).
//! - `GET /readyz`: 200 when the store takes writes and the relay is not shutting down.
//! - `GET /metrics`: Prometheus text.
//! - `POST /hooks/<slug>[/<rest>]`: configured endpoints, `202 {"event_id"}`.
//! - `ANY /<owner>/<repo>[/<rest>]`: the webhook2github-compatible route (unless disabled).
//!
//! Every answer carries CORS headers; `OPTIONS` is answered 204.

mod accept;
pub(crate) mod answer;
mod auth;
mod bodies;
mod compat;
mod endpoint;
mod guard;
mod health;
mod query;
mod router;
mod serve;
mod state;

pub use router::router;
pub use serve::serve;
pub use state::AppState;
