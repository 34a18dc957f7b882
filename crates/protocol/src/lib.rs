//! The contract between hookflow's two halves: what the relay writes and the trigger runtime
//! reads, and what both need to agree on. No I/O, no async.
//!
//! | module | concept |
//! |---|---|
//! | [`payload`] | the `client_payload` of a dispatched webhook, encoded and decoded by one type |
//! | [`batch`] | several events in one dispatch (`client_payload.batch`) |
//! | [`dispatch`] | a `repository_dispatch` request: target repository and GitHub's limits |
//! | [`signature`] | webhook signature schemes (presets and custom HMAC): verify and sign |
//! | [`credentials`] | which headers and parameters are credentials: stripped, or masked |
//! | [`options`] | option values both config files use: durations, times, problems, lines |
//! | [`dotpath`] | lodash-style dot paths into JSON |
//! | [`jsonpath`] | JSONPath queries (outputs, transforms) |
//! | [`environment`] | the clock and the secrets, passed in rather than read from globals |

#![warn(missing_docs)]

pub mod batch;
pub mod body_ref;
pub mod credentials;
pub mod dispatch;
pub mod dotpath;
pub mod environment;
pub mod jsonpath;
pub mod options;
pub mod payload;
pub mod signature;

pub use environment::{Clock, Environment, ManualClock, SystemClock};
