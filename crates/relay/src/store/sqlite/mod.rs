//! The embedded SQLite store: one file, `events.db`, in the data directory, in WAL mode with
//! `synchronous=FULL` so a committed event survives a process crash and a power cut.
//!
//! Delivered events are deleted with their token (their job is done); dead letters keep theirs
//! until they are replayed and delivered, or purged. The file is readable by its owner only.

mod handle;
mod log;
mod open;
mod queue;
mod rows;
mod schema;
#[cfg(test)]
mod tests;

pub use handle::SqliteHandle;
pub use open::{lock_data_dir, prepare_data_dir, SqliteStore, DB_FILE};
pub use schema::{schema_version, SCHEMA_VERSION};
