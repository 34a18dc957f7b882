//! The relay's durable event store: what was acknowledged, what is due, what failed for good.
//!
//! [`Store`] is an async trait with one implementation per engine: SQLite ([`sqlite`]), embedded
//! in one relay, and PostgreSQL ([`postgres`]), shared by several relays. Both batch concurrent
//! inserts into one transaction (one commit, many events), so every request is acknowledged only
//! after its event is committed without paying a commit each. Deliveries are claimed with a
//! lease and a claim token: a lease that runs out makes the delivery claimable again, and only
//! the current claim may record a result. [`StoreHandle`] is whichever engine a relay uses.
//!
//! The contract tests ([`conformance`], test builds only) run against every engine.

#[cfg(test)]
pub(crate) mod conformance;
mod contract;
mod delivery;
mod error;
mod event;
mod handle;
mod log;
pub mod postgres;
pub mod sqlite;

pub use contract::Store;
pub use delivery::ClaimRef;
pub use delivery::Claimed;
pub use delivery::Counts;
pub use delivery::DeadLetter;
pub use delivery::DeliveryState;
pub use delivery::DeliveryStatus;
pub use delivery::PoolStatus;
pub use delivery::Recorded;
pub use delivery::Room;
pub use delivery::SeenKey;
pub use delivery::StoredEvent;
pub use delivery::Tried;
pub use error::StoreError;
pub use event::Destination;
pub use event::Event;
pub use event::Inserted;
pub use event::NewEvent;
pub use event::Payload;
pub use event::TokenSource;
pub use event::DEDUPE_WINDOW_MS;
pub use handle::{Opened, Opening, StoreHandle};
/// A received request, as an event keeps it: the method, the path with the query kept, the
/// forwarded headers (lowercase names, credentials already removed), the exact body bytes.
pub use hookflow_protocol::payload::Incoming as Request;
pub use log::ulid_floor;
pub use log::EventFilter;
pub use log::EventSummary;
pub use log::LogPart;
pub use log::LoggedAttempt;
pub use log::LoggedDelivery;
pub use log::LoggedEvent;
pub use log::MAX_PAGE;
pub use postgres::HandedOff;
