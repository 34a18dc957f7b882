/// A store failure. `Unavailable` means the event was not stored: answer 503.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be written (disk full, read-only, locked, corrupt).
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    /// The store thread is gone (shutting down).
    #[error("the event store is shut down")]
    Closed,
    /// A relay holds the SQLite data directory.
    #[error("another hookflow relay is using {0}; stop it first, or give this one its own --data")]
    Locked(std::path::PathBuf),
    /// The store reached its size cap: new events are refused until delivered ones make room;
    /// deliveries and their results still go on.
    #[error("the event store is full ({used} of {cap} bytes, limits.max_store_bytes); new events are refused until delivered ones make room")]
    Full {
        /// Bytes in use.
        used: u64,
        /// The cap.
        cap: u64,
    },
}
