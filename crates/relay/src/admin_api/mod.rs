//! The admin API (`admin:`), on an address of its own (default `127.0.0.1:8081`) so the public
//! webhook port never exposes it: the event log (list with filters, one event whole), replays,
//! and the queue's health, as JSON documented by `GET /openapi.json`. Every route but
//! `/openapi.json` needs a bearer token from `admin.tokens_env`, compared in constant time.
//!
//! Routes:
//! - `GET /api/events?status=&repository=&destination=&source=&since=&until=&delivery=&q=&before=&limit=`
//! - `GET /api/events/{id}`
//! - `POST /api/events/{id}/replay`
//! - `POST /api/replay` with the list's filters as a JSON object (at most 10,000 events)
//! - `GET /api/health`
//! - `POST /api/reload`: reads the configuration file again (as `SIGHUP` does)
//!
//! And the page ([`page`]): `GET /`, `GET /events/{id}`, `POST /events/{id}/replay`, behind a
//! sign-in (`GET|POST /login`) with the same tokens.

mod api;
pub mod page;
mod router;
mod state;

pub use router::router;
pub use router::OPENAPI;
pub use state::ConsoleState;
