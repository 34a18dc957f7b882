use super::location::PgLocation;
use crate::store::delivery::ClaimRef;
use crate::store::delivery::Claimed;
use crate::store::delivery::Recorded;
use crate::store::error::StoreError;
use crate::store::event::Destination;
use crate::store::event::Inserted;
use crate::store::event::NewEvent;
use deadpool_postgres::Pool;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio::sync::Semaphore;

pub(super) struct Inner {
    pub(super) pool: Pool,
    pub(super) location: PgLocation,
    /// This relay's name in `deliveries.owner`.
    pub(super) relay_id: String,
    pub(super) inserts: mpsc::Sender<(NewEvent, oneshot::Sender<Result<Inserted, StoreError>>)>,
    pub(super) records: mpsc::Sender<RecordJob>,
    /// When this relay last freed deliveries whose lease ran out.
    pub(super) last_reap: Mutex<Instant>,
    /// How often it did.
    pub(super) reaps: std::sync::atomic::AtomicU64,
    /// Where this relay's own new events go straight to its delivery worker, if it takes them.
    pub(super) handoff: Mutex<Option<Handoff>>,
}

/// This relay's delivery worker takes the events this relay stores, up to the room it has: they
/// are stored already claimed by this relay (in flight, with a lease) and handed over in
/// memory, so the common path costs no claim and no announcement. Events past the room are
/// stored pending and announced, for any relay to claim.
#[derive(Clone)]
pub(super) struct Handoff {
    pub(super) tx: mpsc::UnboundedSender<HandedOff>,
    pub(super) room: Arc<Semaphore>,
    pub(super) lease: Duration,
    /// Deliveries never handed over (by endpoint and destination): those of batching lanes,
    /// which their lane's batches claim in arrival order.
    pub(super) keep: KeepPending,
}

/// Whether a new delivery (its endpoint, its destination) is stored pending rather than handed
/// over.
pub type KeepPending = Arc<dyn Fn(&str, &Destination) -> bool + Send + Sync>;

/// An event stored already claimed by this relay, with its place in the worker's queue (free
/// again once the worker takes it).
pub struct HandedOff {
    /// The claimed delivery.
    pub claimed: Claimed,
    /// The place it held.
    pub room: tokio::sync::OwnedSemaphorePermit,
}

pub(super) type InsertJob = (NewEvent, oneshot::Sender<Result<Inserted, StoreError>>);

pub(super) type RecordJob = (
    Vec<(ClaimRef, Recorded)>,
    oneshot::Sender<Result<usize, StoreError>>,
);
