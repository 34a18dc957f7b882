//! The embedded SQLite store: one file, `events.db`, in the data directory, in WAL mode with
//! `synchronous=FULL` so a committed event survives a process crash and a power cut.
//!
//! Delivered events are deleted with their token (their job is done); dead letters keep theirs
//! until they are replayed and delivered, or purged. The file is readable by its owner only.

mod dir;
mod handle;
mod log;
mod open;
mod queue;
mod rows;
mod schema;
#[cfg(test)]
mod tests;

pub use dir::{lock_data_dir, prepare_data_dir, DB_FILE};
pub use handle::SqliteHandle;
pub use open::SqliteStore;
pub use schema::schema_version;
pub use schema::SCHEMA_VERSION;
