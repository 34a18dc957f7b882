//! The helpers of these tests: [`cli`] runs the `hookflow` binary this build made; the rest is
//! `hookflow-testkit`, shared with the relay crate's tests.
pub mod cli;
pub use hookflow_testkit::examples;
#[cfg(feature = "relay")]
pub use hookflow_testkit::{browser, fake_github, load, receiver, relay, seed};
