//! The shared PostgreSQL store: several relays behind a load balancer on one database, each
//! accepting, claiming and delivering, with nothing lost when one dies.
//!
//! - Tables live in their own schema, `hookflow`, versioned by `hookflow.schema_migrations`;
//!   migrations run under an advisory lock, so relays starting together migrate once.
//! - An event is stored once (`events`, the request as received) with one row per destination
//!   (`deliveries`), each with its own state, attempts, lease and dead letter.
//! - A claim is one `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT n) RETURNING`:
//!   atomic and exclusive across relays. It records the owner, a lease deadline and a claim token
//!   (a UUID); a result is written only `WHERE claim = $token`, so a relay whose lease ran out
//!   cannot overwrite the result of the relay that claimed the delivery after it.
//! - Every time is the database's `now()`, never a relay host's clock.
//! - Concurrent inserts of one relay share a transaction (`unnest` arrays: a few statements per
//!   batch, not per event); sender-retry de-duplication is the `seen` table's primary key with
//!   `ON CONFLICT DO NOTHING`.
//! - A committed batch sends `NOTIFY hookflow_new`; every relay `LISTEN`s and wakes its delivery
//!   worker at once, polling being only the fallback.
//!
//! Client: `tokio-postgres` with a `deadpool-postgres` pool and rustls for TLS — a small,
//! explicit driver (no query macros, no build-time database), where batching and `LISTEN` are
//! plain code.

mod db;
mod impl_store;
mod inner;
mod insert;
mod location;
mod open;
mod record;
mod rows;
mod schema;
#[cfg(any(test, feature = "test-support"))]
pub mod scratch;
#[cfg(test)]
mod tests;

pub use inner::{HandedOff, KeepPending};
pub use location::PgLocation;
pub use open::PgStore;
pub use schema::SchemaState;
pub use schema::SCHEMA_VERSION;
