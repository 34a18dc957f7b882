use crate::store::error::StoreError;
use std::time::Duration;

/// The channel new events are announced on.
pub(super) const CHANNEL: &str = "hookflow_new";

/// Most inserts committed together.
pub(super) const MAX_BATCH: usize = 512;

/// Insert transactions of one relay at once. One: while a commit waits for the disk, the
/// requests that arrive meanwhile gather into the next batch, so batches grow with the load and
/// each costs one flush. (Measured with two relays: at 2 or 4 at once, commits overlap into
/// smaller batches and each request waits longer.)
pub(super) const BATCHES_IN_FLIGHT: usize = 1;

/// How often a relay frees deliveries whose lease ran out.
pub(super) const REAP_EVERY: Duration = Duration::from_millis(250);

/// Full rate-limit buckets are forgotten every this many reaps (about a minute).
pub(super) const LANE_PRUNE_EVERY_REAPS: u64 = 240;

/// Connections in the pool.
pub(super) const POOL_SIZE: usize = 16;

/// A database error with its causes (the server's own message comes as the source of
/// `tokio_postgres::Error`, whose text alone is just "db error").
pub(super) fn db_error(what: &str, e: impl std::error::Error) -> StoreError {
    let mut text = format!("PostgreSQL: {what}: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    StoreError::Unavailable(text)
}

pub(super) fn pool_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL: no connection: {e}"))
}

pub(super) fn millis(d: Duration) -> f64 {
    d.as_millis() as f64
}

/// An attempt's duration in whole milliseconds, as the log keeps it.
pub(super) fn took_ms(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// A claim token as the database writes it (a UUID); anything else matches no claim.
pub(super) fn uuid_text(s: &str) -> Result<&str, ()> {
    let ok = s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| {
            matches!(i, 8 | 13 | 18 | 23) == (b == b'-') && (b == b'-' || b.is_ascii_hexdigit())
        });
    if ok {
        Ok(s)
    } else {
        Err(())
    }
}

/// A new claim token in a UUID's form: a ULID's 128 bits (80 of them random), unique across
/// relays as `gen_random_uuid()`'s are.
pub(super) fn claim_token() -> String {
    let h = format!("{:032x}", ulid::Ulid::generate().0);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
