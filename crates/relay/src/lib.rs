//! The relay (`hookflow relay`): an HTTP server that accepts webhooks, stores them durably,
//! answers at once, and delivers them to GitHub's dispatches API with retries.
//!
//! The modules follow a webhook's way (ARCHITECTURE.md draws the layers):
//!
//! | module | concept |
//! |---|---|
//! | [`run`] | start-up and shutdown: listeners, the store opened once, the tasks |
//! | [`http`] | accept: routes, the guard, authentication, storing, answers, bodies served |
//! | [`store`] | the durable queue (SQLite or PostgreSQL): events and their deliveries |
//! | [`delivery`] | deliver: scheduler, batches, one delivery, sending, attempts, backoff |
//! | [`outbound`] | send: the GitHub API client, the GitHub App, plain HTTP destinations |
//! | [`destinations`] | what each destination is sent: the request, a transform, the dispatch |
//! | [`bodies`] | bodies by reference: kept and pruned |
//! | [`config`] | the YAML configuration, its checks and defaults |
//! | [`live`] | the running configuration, swapped whole on reload, and the bounds it sets |
//! | [`limits`] | what a client may cost: connections, requests per address, dispatch rates |
//! | [`admin_api`] | the admin API and page on their own address: event log, replays, health |
//! | [`operator`] | what the operator's commands do: dead letters, the config check, events |
//! | [`metrics`] | counters and histograms for `/metrics` |
//! | [`retention`] | the event log's retention: old delivered events pruned in small batches |
//!
//! The `client_payload` a request becomes is [`hookflow_protocol::payload`]'s; this crate never
//! builds it by hand.

#![warn(missing_docs)]

pub mod admin_api;
pub mod bodies;
pub mod config;
pub mod delivery;
pub mod destinations;
pub mod http;
pub mod limits;
pub mod live;
pub mod metrics;
pub mod operator;
pub mod outbound;
pub mod retention;
pub mod run;
pub mod store;

pub use config::RelayConfig;
pub use hookflow_protocol::Environment;
pub use run::{default_store_cap, start, RelayError, Running};
