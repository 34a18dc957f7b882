use super::open::SqliteStore;
use super::rows::LaneClaim;
use super::rows::MAX_BATCH;
use crate::store::contract::Store;
use crate::store::delivery::ClaimRef;
use crate::store::delivery::Claimed;
use crate::store::delivery::Counts;
use crate::store::delivery::DeadLetter;
use crate::store::delivery::Recorded;
use crate::store::delivery::Room;
use crate::store::error::StoreError;
use crate::store::event::Inserted;
use crate::store::event::NewEvent;
use crate::store::log::ulid_floor;
use crate::store::log::EventFilter;
use crate::store::log::EventSummary;
use crate::store::log::LogPart;
use crate::store::log::LoggedEvent;
use hookflow_protocol::Clock;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

enum Command {
    Insert(Box<NewEvent>, oneshot::Sender<Result<Inserted, StoreError>>),
    Record(
        Vec<(ClaimRef, Recorded)>,
        oneshot::Sender<Result<usize, StoreError>>,
    ),
    Claim(
        usize,
        Duration,
        oneshot::Sender<Result<Vec<Claimed>, StoreError>>,
    ),
    ClaimLane(Box<LaneClaim>),
    NextDue(oneshot::Sender<Result<Option<Duration>, StoreError>>),
    Counts(oneshot::Sender<Result<Counts, StoreError>>),
    Ping(oneshot::Sender<Result<Room, StoreError>>),
    DeadLetters(usize, oneshot::Sender<Result<Vec<DeadLetter>, StoreError>>),
    ReplayDead(Vec<String>, oneshot::Sender<Result<u64, StoreError>>),
    PurgeDead(Duration, oneshot::Sender<Result<u64, StoreError>>),
    KeepBody(
        String,
        Vec<u8>,
        i64,
        oneshot::Sender<Result<(), StoreError>>,
    ),
    Body(String, oneshot::Sender<Result<Option<Vec<u8>>, StoreError>>),
    PruneBodies(usize, oneshot::Sender<Result<u64, StoreError>>),
    PruneEvents(
        LogPart,
        Duration,
        usize,
        oneshot::Sender<Result<u64, StoreError>>,
    ),
    ListEvents(
        Box<EventFilter>,
        usize,
        oneshot::Sender<Result<Vec<EventSummary>, StoreError>>,
    ),
    LoggedEvent(
        String,
        oneshot::Sender<Result<Option<LoggedEvent>, StoreError>>,
    ),
    Replay(
        Vec<String>,
        Box<EventFilter>,
        usize,
        oneshot::Sender<Result<u64, StoreError>>,
    ),
}

/// The SQLite store as a [`Store`]: the connection lives on a thread of its own, which takes
/// every command waiting and runs all inserts (and all results) in one transaction, so a burst
/// of requests pays one commit. Cloning shares the thread.
#[derive(Clone)]
pub struct SqliteHandle {
    tx: mpsc::Sender<Command>,
}

impl SqliteHandle {
    /// Starts the store thread; `clock` gives every time the store records.
    pub fn start(store: SqliteStore, clock: Arc<dyn Clock>) -> Result<SqliteHandle, StoreError> {
        let (tx, rx) = mpsc::channel::<Command>();
        std::thread::Builder::new()
            .name("hookflow-store".into())
            .spawn(move || run(store, rx, clock.as_ref()))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the store thread: {e}")))?;
        Ok(SqliteHandle { tx })
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, wait) = oneshot::channel();
        self.tx.send(make(reply)).map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }
}

impl Store for SqliteHandle {
    async fn insert(&self, event: NewEvent) -> Result<Inserted, StoreError> {
        self.call(|r| Command::Insert(Box::new(event), r)).await
    }
    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Claimed>, StoreError> {
        self.call(|r| Command::Claim(limit, lease, r)).await
    }
    async fn record(&self, results: Vec<(ClaimRef, Recorded)>) -> Result<usize, StoreError> {
        self.call(|r| Command::Record(results, r)).await
    }
    async fn claim_lane(
        &self,
        leader: &Claimed,
        members: Vec<ClaimRef>,
        batch_id: String,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, StoreError> {
        let leader = leader.clone();
        self.call(|reply| {
            Command::ClaimLane(Box::new(LaneClaim {
                leader,
                members,
                batch_id,
                limit,
                lease,
                reply,
            }))
        })
        .await
    }
    async fn next_due(&self) -> Result<Option<Duration>, StoreError> {
        self.call(Command::NextDue).await
    }
    async fn counts(&self) -> Result<Counts, StoreError> {
        self.call(Command::Counts).await
    }
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        self.call(|r| Command::DeadLetters(limit, r)).await
    }
    async fn replay_dead(&self, ids: Vec<String>) -> Result<u64, StoreError> {
        self.call(|r| Command::ReplayDead(ids, r)).await
    }
    async fn purge_dead(&self, older_than: Duration) -> Result<u64, StoreError> {
        self.call(|r| Command::PurgeDead(older_than, r)).await
    }
    async fn ping(&self) -> Result<Room, StoreError> {
        self.call(Command::Ping).await
    }
    async fn keep_body(
        &self,
        id: String,
        bytes: Vec<u8>,
        keep_until: i64,
    ) -> Result<(), StoreError> {
        self.call(|r| Command::KeepBody(id, bytes, keep_until, r))
            .await
    }
    async fn body(&self, id: String) -> Result<Option<Vec<u8>>, StoreError> {
        self.call(|r| Command::Body(id, r)).await
    }
    async fn prune_bodies(&self, limit: usize) -> Result<u64, StoreError> {
        self.call(|r| Command::PruneBodies(limit, r)).await
    }
    async fn prune_events(
        &self,
        part: LogPart,
        older_than: Duration,
        limit: usize,
    ) -> Result<u64, StoreError> {
        self.call(|r| Command::PruneEvents(part, older_than, limit, r))
            .await
    }
    async fn list_events(
        &self,
        filter: EventFilter,
        limit: usize,
    ) -> Result<Vec<EventSummary>, StoreError> {
        self.call(|r| Command::ListEvents(Box::new(filter), limit, r))
            .await
    }
    async fn logged_event(&self, id: String) -> Result<Option<LoggedEvent>, StoreError> {
        self.call(|r| Command::LoggedEvent(id, r)).await
    }
    async fn replay(
        &self,
        ids: Vec<String>,
        filter: EventFilter,
        limit: usize,
    ) -> Result<u64, StoreError> {
        self.call(|r| Command::Replay(ids, Box::new(filter), limit, r))
            .await
    }
}

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// The store thread: takes every command waiting, runs all inserts and all results in one
/// transaction each, then answers.
fn run(mut store: SqliteStore, rx: mpsc::Receiver<Command>, clock: &dyn Clock) {
    while let Ok(first) = rx.recv() {
        let mut commands = vec![first];
        while commands.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => commands.push(c),
                Err(_) => break,
            }
        }
        let mut inserts = Vec::new();
        let mut insert_replies = Vec::new();
        let mut records = Vec::new();
        let mut record_replies = Vec::new();
        let mut others = Vec::new();
        for c in commands {
            match c {
                Command::Insert(e, r) => {
                    inserts.push(*e);
                    insert_replies.push(r);
                }
                Command::Record(rs, r) => {
                    record_replies.push((r, rs.len()));
                    records.extend(rs);
                }
                other => others.push(other),
            }
        }
        if !inserts.is_empty() {
            match store.insert(&inserts, clock.now_ms()) {
                Ok(results) => {
                    for (r, result) in insert_replies.into_iter().zip(results) {
                        let _ = r.send(Ok(result));
                    }
                }
                Err(e) => {
                    for r in insert_replies {
                        let _ = r.send(Err(e.clone()));
                    }
                }
            }
        }
        if !records.is_empty() {
            match store.record(&records, clock.now_ms()) {
                Ok(done) => {
                    let mut done = done.into_iter();
                    for (r, mine) in record_replies {
                        let _ = r.send(Ok(done.by_ref().take(mine).filter(|d| *d).count()));
                    }
                }
                Err(e) => {
                    for (r, _) in record_replies {
                        let _ = r.send(Err(e.clone()));
                    }
                }
            }
        }
        for c in others {
            let now = clock.now_ms();
            match c {
                Command::Claim(limit, lease, r) => {
                    let _ = r.send(store.claim(now, limit, millis(lease)));
                }
                Command::ClaimLane(c) => {
                    let c = *c;
                    let _ = c.reply.send(store.claim_lane(
                        now,
                        &c.leader,
                        &c.members,
                        &c.batch_id,
                        c.limit,
                        millis(c.lease),
                    ));
                }
                Command::NextDue(r) => {
                    let _ =
                        r.send(store.next_due().map(|at| {
                            at.map(|at| Duration::from_millis((at - now).max(0) as u64))
                        }));
                }
                Command::Counts(r) => {
                    let _ = r.send(store.counts());
                }
                Command::Ping(r) => {
                    let _ = r.send(store.ping());
                }
                Command::DeadLetters(limit, r) => {
                    let _ = r.send(store.dead_letters(limit));
                }
                Command::ReplayDead(ids, r) => {
                    let _ = r.send(store.replay_dead(&ids, now));
                }
                Command::PurgeDead(older_than, r) => {
                    let before = if older_than.is_zero() {
                        i64::MAX
                    } else {
                        now - millis(older_than)
                    };
                    let _ = r.send(store.purge_dead(before));
                }
                Command::KeepBody(id, bytes, keep_until, r) => {
                    let _ = r.send(store.keep_body(&id, &bytes, keep_until));
                }
                Command::Body(id, r) => {
                    let _ = r.send(store.body(&id, now));
                }
                Command::PruneBodies(limit, r) => {
                    let _ = r.send(store.prune_bodies(now, limit));
                }
                Command::ListEvents(filter, limit, r) => {
                    let _ = r.send(store.list_events(&filter, limit));
                }
                Command::LoggedEvent(id, r) => {
                    let _ = r.send(store.logged_event(&id));
                }
                Command::Replay(ids, filter, limit, r) => {
                    let _ = r.send(store.replay(&ids, &filter, limit, now));
                }
                Command::PruneEvents(part, older_than, limit, r) => {
                    let before = ulid_floor(now - millis(older_than));
                    let _ = r.send(store.prune_events(part, &before, limit));
                }
                Command::Insert(..) | Command::Record(..) => {}
            }
        }
    }
}
