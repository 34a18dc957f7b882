use super::delivery::ClaimRef;
use super::delivery::Claimed;
use super::delivery::Counts;
use super::delivery::DeadLetter;
use super::delivery::Recorded;
use super::delivery::Room;
use super::error::StoreError;
use super::event::Inserted;
use super::event::NewEvent;
use super::log::EventFilter;
use super::log::EventSummary;
use super::log::LogPart;
use super::log::LoggedEvent;
use std::future::Future;
use std::time::Duration;

/// The durable queue behind the relay: SQLite embedded in one relay ([`sqlite`]) or PostgreSQL
/// shared by several ([`postgres`]). Every method may be called from many tasks at once; each
/// engine batches what it can (concurrent inserts share one commit).
pub trait Store: Send + Sync {
    /// Stores one event; returns once it is committed. An event whose `dedupe_key` was seen within
    /// [`DEDUPE_WINDOW_MS`] is not stored again, unless that first event is a dead letter (a
    /// sender's retry of a failed delivery is a new chance, not a repeat).
    fn insert(&self, event: NewEvent) -> impl Future<Output = Result<Inserted, StoreError>> + Send;
    /// Claims up to `limit` due deliveries (pending and due, or in flight with an expired lease),
    /// oldest first, each leased to this relay for `lease`.
    fn claim(
        &self,
        limit: usize,
        lease: Duration,
    ) -> impl Future<Output = Result<Vec<Claimed>, StoreError>> + Send;
    /// Claims, for a batch led by `leader`, up to `limit` more pending deliveries of the same
    /// endpoint and lane (repository and credential), oldest first: those due now and those
    /// waiting only for the lane's rate limit ([`Recorded::RateLimited`]), never one waiting
    /// out a retry's backoff. Every delivery of the batch (`members`, claimed already, and
    /// those returned) records `batch_id`.
    fn claim_lane(
        &self,
        leader: &Claimed,
        members: Vec<ClaimRef>,
        batch_id: String,
        limit: usize,
        lease: Duration,
    ) -> impl Future<Output = Result<Vec<Claimed>, StoreError>> + Send;
    /// Records results; one whose claim is no longer current (its lease ran out and another
    /// relay claimed it) changes nothing. Returns how many were recorded.
    fn record(
        &self,
        results: Vec<(ClaimRef, Recorded)>,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;
    /// How long until the next pending delivery is due (zero when one is due now), if any.
    fn next_due(&self) -> impl Future<Output = Result<Option<Duration>, StoreError>> + Send;
    /// Counts by state.
    fn counts(&self) -> impl Future<Output = Result<Counts, StoreError>> + Send;
    /// Dead letters, oldest first.
    fn dead_letters(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, StoreError>> + Send;
    /// Makes dead letters pending again, each from its first attempt; returns how many. An id
    /// is a delivery's (digits: that destination alone) or an event's (every dead delivery of
    /// it); all dead letters when `ids` is empty.
    fn replay_dead(&self, ids: Vec<String>)
        -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Deletes dead letters received more than `older_than` ago (all of them for zero); returns
    /// how many.
    fn purge_dead(
        &self,
        older_than: Duration,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Checks that the store can take a write now, and says how full it is (cheaply: `/readyz`
    /// calls it, and must not scan the events).
    fn ping(&self) -> impl Future<Output = Result<Room, StoreError>> + Send;
    /// Keeps `bytes` as the body `id` until `keep_until` (milliseconds since the epoch), to
    /// serve by reference (`GET /bodies/<id>`); a body kept already keeps its bytes and the
    /// later of the two times. Not bound by the store's size cap: the bodies are those of
    /// events already accepted.
    fn keep_body(
        &self,
        id: String,
        bytes: Vec<u8>,
        keep_until: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A kept body while its time lasts; `None` once it is over (or never kept).
    fn body(&self, id: String) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;
    /// Deletes up to `limit` bodies whose time is over, or whose event's every delivery is
    /// dead (no run will fetch them; a replay keeps them again); returns how many.
    fn prune_bodies(&self, limit: usize) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// The newest events that pass `filter`, at most `limit` ([`MAX_PAGE`]), newest first.
    fn list_events(
        &self,
        filter: EventFilter,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<EventSummary>, StoreError>> + Send;
    /// One event of the log, whole, if the store has it.
    fn logged_event(
        &self,
        id: String,
    ) -> impl Future<Output = Result<Option<LoggedEvent>, StoreError>> + Send;
    /// Makes delivered and dead deliveries pending again, each as a new attempt chain: those
    /// named (delivery ids, or event ids for all of an event's), or with `ids` empty those of
    /// the events `filter` lists (at most `limit`). Events whose body `retention.bodies`
    /// dropped are left out: there is nothing to send again. Returns how many deliveries.
    fn replay(
        &self,
        ids: Vec<String>,
        filter: EventFilter,
        limit: usize,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// The event log's retention, oldest first, up to `limit` events received more than
    /// `older_than` ago whose deliveries are all delivered: deletes them with their deliveries
    /// and attempts ([`LogPart::Events`]), or empties their bodies ([`LogPart::Bodies`]:
    /// `body_pruned`, the rest stays). Dead letters stay whole until replayed or purged.
    /// Returns how many events.
    fn prune_events(
        &self,
        part: LogPart,
        older_than: Duration,
        limit: usize,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}
