//! Delivery: claim due events from the store, dispatch them with bounded concurrency, and
//! record each outcome: delivered, retry later (exponential backoff with jitter, or GitHub's
//! own `Retry-After` / rate-limit reset), or dead letter (a 4xx that retrying cannot fix, or
//! attempts exhausted). HTTP handlers live in [`crate::http`]; this module never sees a request.
//!
//! A delivery's way runs down the files, never back up:
//!
//! | module | layer |
//! |---|---|
//! | `scheduler` | claims due deliveries, places them (alone or with their lane's leader), runs them |
//! | `batch` | a batching lane's leader: as many waiting deliveries as fit in one dispatch |
//! | `single` | one delivery on its own, to a repository or an HTTP destination |
//! | `send` | a dispatch sent with the delivery's credential |
//! | `attempt` | what an attempt's outcome is recorded as, counted and logged once |
//! | `claims` | deliveries in flight, and their results written to the store |
//! | [`backoff`] | when a failed delivery is tried again |

mod attempt;
pub mod backoff;
mod batch;
mod claims;
mod scheduler;
mod send;
mod single;

pub use batch::Batches;
pub use scheduler::{run, Worker};
pub use send::Senders;
pub use single::deliver;
