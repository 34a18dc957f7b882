//! hookflow's integration tests, one binary: the `hookflow` binary this build made, run as users
//! run it, on real files and over real HTTP on 127.0.0.1. The relay library's own in-process
//! tests are in `crates/relay/tests`; helpers shared by both are `hookflow-testkit`.
//!
//! Every `.rs` file here is a module of this binary (`autotests = false`; `scripts/check-layers`
//! fails on a file not declared below). The sending side's modules need the `relay` feature,
//! switched here once.

mod support;

// The trigger runtime: `hookflow run`, `replay`, `validate`, the action and the project's files.
mod action_install;
mod layers;
mod project;
mod properties;
mod rules;
mod runtime;
mod runtime_attacks;
mod runtime_batches;
mod runtime_body_ref;
mod runtime_large_bodies;

// The relay, through the binary and end to end.
#[cfg(feature = "relay")]
mod admin_api;
#[cfg(feature = "relay")]
mod batching;
#[cfg(feature = "relay")]
mod crash;
#[cfg(feature = "relay")]
mod destinations;
#[cfg(feature = "relay")]
mod end_to_end;
#[cfg(feature = "relay")]
mod operations;
#[cfg(feature = "relay")]
mod relay;
#[cfg(feature = "relay")]
mod relay_app;
#[cfg(feature = "relay")]
mod relay_body_ref;
#[cfg(feature = "relay")]
mod relay_postgres;
#[cfg(feature = "relay")]
mod scale_out;
