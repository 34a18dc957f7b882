use super::event::Destination;
use super::event::Event;
use super::event::NewEvent;
use std::time::Duration;

/// A delivery's state as it moves to another store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryState {
    /// A dead letter, not a pending delivery.
    pub dead: bool,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due (milliseconds since the epoch).
    pub next_attempt_at: i64,
    /// The last failure.
    pub last_error: Option<String>,
    /// The destination's status of the last failure.
    pub last_status: Option<u16>,
}

/// A connection pool's figures (PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Connections open.
    pub open: usize,
    /// Open and idle.
    pub idle: usize,
    /// Operations waiting for a connection.
    pub waiting: usize,
    /// The pool's size.
    pub max: usize,
}

/// A delivery claimed by this relay: it holds the lease until it records a result or the lease
/// runs out (then any relay may claim it again, and this relay's result is refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The delivery's id: what results are recorded against.
    pub id: String,
    /// Where it goes.
    pub destination: Destination,
    /// The event (shared by the deliveries of one event claimed together).
    pub event: std::sync::Arc<Event>,
    /// Deliveries tried before this one.
    pub attempts: u32,
    /// The claim token: a result is recorded only with it, so a relay whose lease ran out and
    /// whose delivery another relay claimed cannot overwrite that relay's result.
    pub claim: String,
}

/// Which claim a result is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRef {
    /// The delivery's id.
    pub id: String,
    /// The claim token.
    pub claim: String,
}

impl From<&Claimed> for ClaimRef {
    fn from(c: &Claimed) -> Self {
        ClaimRef {
            id: c.id.clone(),
            claim: c.claim.clone(),
        }
    }
}

/// What a delivery attempt came to. Times are relative: each engine adds them to its own clock
/// (the database's, for a shared database), never to the relay host's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The destination accepted it: the delivery is done (and kept in the event log).
    Delivered {
        /// The attempt that delivered it.
        tried: Option<Tried>,
    },
    /// Try again after this long.
    RetryAfter {
        /// How long.
        delay: Duration,
        /// Why the last attempt failed.
        error: String,
        /// The attempt, when a request was made.
        tried: Option<Tried>,
    },
    /// Not tried (a shutdown, a batch split): try after this long, without counting an attempt.
    Defer {
        /// How long.
        delay: Duration,
    },
    /// Not tried for the lane's dispatch rate limit: try after this long, without counting an
    /// attempt. A batching lane's next batch may take it sooner ([`Store::claim_lane`]).
    RateLimited {
        /// How long.
        delay: Duration,
    },
    /// Failed for good: kept as a dead letter.
    Dead {
        /// Why.
        error: String,
        /// GitHub's status, when it answered.
        status: Option<u16>,
        /// The attempt, when a request was made (none for a delivery that could not be sent
        /// at all, such as a token variable that is not set).
        tried: Option<Tried>,
    },
}

impl Recorded {
    /// Delivered, without an attempt to log (tests, tools).
    pub fn delivered() -> Recorded {
        Recorded::Delivered { tried: None }
    }

    /// The attempt this result comes from, if a request was made.
    pub fn tried(&self) -> Option<&Tried> {
        match self {
            Recorded::Delivered { tried }
            | Recorded::RetryAfter { tried, .. }
            | Recorded::Dead { tried, .. } => tried.as_ref(),
            Recorded::Defer { .. } | Recorded::RateLimited { .. } => None,
        }
    }
}

/// One try of a delivery, as the event log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tried {
    /// How long the destination took to answer (or to fail).
    pub took: Duration,
    /// The destination's HTTP status, when it answered.
    pub status: Option<u16>,
    /// The dispatch that carried it, when it went in a batch.
    pub batch_id: Option<String>,
}

/// A dead letter: one delivery of an event that failed for good (the event's other
/// deliveries go their own way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The delivery's id (replays this destination alone).
    pub id: String,
    /// The event's id (replays every dead delivery of the event).
    pub event_id: String,
    /// Where it was going ([`Destination::key`]: `repo:OWNER/NAME` or `http:<url>`).
    pub destination: String,
    /// The endpoint slug, or `compat`.
    pub source: String,
    /// The event type.
    pub event_type: String,
    /// Delivery attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: String,
    /// When it was received (ms since the epoch).
    pub received_at: i64,
}

/// Counts by state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Waiting for delivery (including retries).
    pub pending: u64,
    /// Being delivered now.
    pub inflight: u64,
    /// Failed for good.
    pub dead: u64,
    /// Receive time of the oldest pending event (ms), if any.
    pub oldest_pending: Option<i64>,
    /// How much room the store's data takes.
    pub room: Room,
}

/// How much of the store's size cap its data takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Room {
    /// Bytes the store's data takes (free pages not counted).
    pub bytes_used: u64,
    /// The size cap new events may not pass, if any.
    pub bytes_cap: Option<u64>,
}

impl Room {
    /// Whether new events are refused for lack of room.
    pub fn full(&self) -> bool {
        self.bytes_cap.is_some_and(|cap| self.bytes_used >= cap)
    }
}

/// A delivery's state as the event log shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting (a first try or a retry).
    Pending,
    /// Being delivered now.
    Inflight,
    /// Accepted by its destination.
    Delivered,
    /// Failed for good: a dead letter.
    Dead,
}

impl DeliveryStatus {
    /// Its name in the store and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Inflight => "inflight",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    /// From its name.
    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Inflight,
            DeliveryStatus::Delivered,
            DeliveryStatus::Dead,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// What an attempt came to, as the event log writes it.
pub(crate) fn attempt_outcome(r: &Recorded) -> &'static str {
    match r {
        Recorded::Delivered { .. } => "delivered",
        Recorded::Dead { .. } => "dead",
        _ => "retry",
    }
}

/// An event waiting in a store (some delivery pending, or a dead letter), as it moves to
/// another store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The event as it was stored with the destinations it still owes (its `dedupe_key` is
    /// in [`SeenKey`]s).
    pub event: NewEvent,
    /// Each destination's delivery state, in the order of `event.destinations`.
    pub deliveries: Vec<DeliveryState>,
}

/// A sender's delivery id the store remembers, so a repeat is recognised after a move too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenKey {
    /// The de-duplication key.
    pub key: String,
    /// The event it named first.
    pub event_id: String,
    /// When (milliseconds since the epoch).
    pub at: i64,
}
