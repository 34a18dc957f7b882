//! The relay library's integration tests, one binary: the relay started in this process over
//! real HTTP on 127.0.0.1, a real SQLite file (PostgreSQL where said), a fake GitHub and plain
//! receivers from `hookflow-testkit`. Tests of the `hookflow` binary are in `crates/cli/tests`.
//!
//! Every `.rs` file here is a module of this binary (`autotests = false`; `scripts/check-layers`
//! fails on a file not declared below).

mod attacks;
mod body_sizes;
mod forward;
mod github_app;

/// The shared helpers, under the name every test module uses.
mod support {
    pub use hookflow_testkit::*;
}
