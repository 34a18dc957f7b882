//! The shared PostgreSQL store: several relays behind a load balancer on one database, each
//! accepting, claiming and delivering, with nothing lost when one dies.
//!
//! - Tables live in their own schema, `hookflow`, versioned by `hookflow.schema_migrations`;
//!   migrations run under an advisory lock, so relays starting together migrate once.
//! - An event is stored once (`events`, the request as received) with one row per destination
//!   (`deliveries`), each with its own state, attempts, lease and dead letter.
//! - A claim is one `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT n) RETURNING`:
//!   atomic and exclusive across relays. It records the owner, a lease deadline and a claim token
//!   (a UUID); a result is written only `WHERE claim = $token`, so a relay whose lease ran out
//!   cannot overwrite the result of the relay that claimed the delivery after it.
//! - Every time is the database's `now()`, never a relay host's clock.
//! - Concurrent inserts of one relay share a transaction (`unnest` arrays: a few statements per
//!   batch, not per event); sender-retry de-duplication is the `seen` table's primary key with
//!   `ON CONFLICT DO NOTHING`.
//! - A committed batch sends `NOTIFY hookflow_new`; every relay `LISTEN`s and wakes its delivery
//!   worker at once, polling being only the fallback.
//!
//! Client: `tokio-postgres` with a `deadpool-postgres` pool and rustls for TLS — a small,
//! explicit driver (no query macros, no build-time database), where batching and `LISTEN` are
//! plain code.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio_postgres::types::ToSql;

use super::{
    split_replay_ids, ulid_floor, ClaimRef, Claimed, Counts, DeadLetter, DeliveryStatus,
    Destination, Event, EventFilter, EventSummary, Inserted, LogPart, LoggedAttempt,
    LoggedDelivery, LoggedEvent, NewEvent, Payload, Recorded, Room, SeenKey, Store, StoreError,
    StoredEvent, DEDUPE_WINDOW_MS, MAX_PAGE,
};

/// The schema, one migration per version, each applied once in its own transaction. A released
/// migration never changes: a new version gets a new entry.
const MIGRATIONS: [(i32, &str); 8] = [
    (
        1,
        "CREATE TABLE hookflow.events (
         id          TEXT PRIMARY KEY,
         received_at TIMESTAMPTZ NOT NULL,
         source      TEXT NOT NULL,
         event_type  TEXT NOT NULL,
         payload     BYTEA NOT NULL,
         body_bytes  BIGINT NOT NULL
     );
     CREATE TABLE hookflow.deliveries (
         id          BIGSERIAL PRIMARY KEY,
         event_id    TEXT NOT NULL REFERENCES hookflow.events (id) ON DELETE CASCADE,
         destination TEXT NOT NULL,
         lane        TEXT NOT NULL,
         token       TEXT,
         state       TEXT NOT NULL CHECK (state IN ('pending', 'inflight', 'delivered', 'dead')),
         attempts    INTEGER NOT NULL DEFAULT 0,
         next_at     TIMESTAMPTZ NOT NULL,
         owner       TEXT,
         claim       UUID,
         lease_until TIMESTAMPTZ,
         last_status INTEGER,
         last_error  TEXT,
         updated_at  TIMESTAMPTZ NOT NULL
     );
     CREATE INDEX deliveries_due ON hookflow.deliveries (next_at, id) WHERE state = 'pending';
     CREATE INDEX deliveries_lease ON hookflow.deliveries (lease_until) WHERE state = 'inflight';
     CREATE INDEX deliveries_event ON hookflow.deliveries (event_id);
     CREATE INDEX deliveries_dead ON hookflow.deliveries (event_id) WHERE state = 'dead';
     CREATE TABLE hookflow.seen (
         key      TEXT PRIMARY KEY,
         event_id TEXT NOT NULL,
         at       TIMESTAMPTZ NOT NULL
     );
     CREATE INDEX seen_at ON hookflow.seen (at);",
    ),
    // Queue tables churn: every row is deleted within moments of its insert. Vacuum them after
    // a fixed number of dead rows, not a fraction of the table, and without pausing, so scans
    // of the due index do not wade through dead entries. The foreign key goes: its per-row
    // triggers cost more than the rest of an insert, and the store's own statements keep
    // events and deliveries together (set-based, in the statement that deletes either).
    (
        2,
        "ALTER TABLE hookflow.deliveries DROP CONSTRAINT deliveries_event_id_fkey;
         ALTER TABLE hookflow.deliveries SET (autovacuum_vacuum_scale_factor = 0,
             autovacuum_vacuum_threshold = 5000, autovacuum_vacuum_cost_delay = 0,
             autovacuum_analyze_scale_factor = 0.02);
         ALTER TABLE hookflow.events SET (autovacuum_vacuum_scale_factor = 0,
             autovacuum_vacuum_threshold = 5000, autovacuum_vacuum_cost_delay = 0);
         ALTER TABLE hookflow.seen SET (autovacuum_vacuum_scale_factor = 0,
             autovacuum_vacuum_threshold = 5000, autovacuum_vacuum_cost_delay = 0);",
    ),
    // The dispatch rate limit of each lane (repository and credential) for the whole cluster:
    // a token bucket, and the last slot booked for a delivery that found it empty.
    (
        3,
        "CREATE TABLE hookflow.lanes (
             lane      TEXT PRIMARY KEY,
             tokens    FLOAT8 NOT NULL,
             at        TIMESTAMPTZ NOT NULL,
             last_slot TIMESTAMPTZ NOT NULL
         );",
    ),
    // Destinations (docs/design/store.md): an event keeps the request as received (its exact
    // body in `payload`, `payload_kind = 'request'`), and each destination builds what it sends
    // from it. Rows from before keep their dispatch body (`payload_kind = 'dispatch'`).
    (
        4,
        "ALTER TABLE hookflow.events
             ADD COLUMN payload_kind TEXT NOT NULL DEFAULT 'dispatch',
             ADD COLUMN method TEXT,
             ADD COLUMN path TEXT,
             ADD COLUMN headers TEXT;",
    ),
    // Batching (docs/design/store.md): a delivery waiting only for its lane's rate limit
    // (`deferred_for = 'rate'`) may join the lane's next batch before its time; `batch_id`
    // names the batch that last carried it. The lane index serves that look.
    (
        5,
        "ALTER TABLE hookflow.deliveries
             ADD COLUMN deferred_for TEXT,
             ADD COLUMN batch_id TEXT;
         CREATE INDEX deliveries_lane ON hookflow.deliveries (lane, id) WHERE state = 'pending';",
    ),
    // Bodies by reference (docs/design/store.md): a body too large for a dispatch is kept
    // here, apart from its event (which goes once delivered), until `keep_until`. Stored
    // uncompressed: they are read whole, and compressing megabytes in the server costs more
    // than the disk it saves for a week.
    (
        6,
        "CREATE TABLE hookflow.bodies (
             id         TEXT PRIMARY KEY,
             bytes      BYTEA NOT NULL,
             keep_until TIMESTAMPTZ NOT NULL
         );
         ALTER TABLE hookflow.bodies ALTER COLUMN bytes SET STORAGE EXTERNAL;
         CREATE INDEX bodies_keep_until ON hookflow.bodies (keep_until);",
    ),
    // The event log (docs/design/event-log.md): delivered deliveries stay (`delivered` was
    // allowed from the start), each try is an attempt row, a replay starts a new `chain`, and
    // events keep the sender's delivery id; indexes for the list's filters.
    (
        7,
        "ALTER TABLE hookflow.deliveries ADD COLUMN chain INTEGER NOT NULL DEFAULT 0;
         CREATE TABLE hookflow.attempts (
             id          BIGSERIAL PRIMARY KEY,
             delivery_id BIGINT NOT NULL,
             event_id    TEXT NOT NULL,
             chain       INTEGER NOT NULL,
             at          TIMESTAMPTZ NOT NULL,
             took_ms     INTEGER,
             status      INTEGER,
             outcome     TEXT NOT NULL,
             message     TEXT,
             relay       TEXT,
             batch_id    TEXT
         );
         CREATE INDEX attempts_event ON hookflow.attempts (event_id);
         ALTER TABLE hookflow.events
             ADD COLUMN delivery_key TEXT,
             ADD COLUMN body_pruned BOOLEAN NOT NULL DEFAULT false;
         CREATE INDEX events_source ON hookflow.events (source, id);
         CREATE INDEX events_delivery_key ON hookflow.events (delivery_key)
             WHERE delivery_key IS NOT NULL;
         CREATE INDEX deliveries_state_event ON hookflow.deliveries (state, event_id);
         CREATE INDEX deliveries_destination_event ON hookflow.deliveries (destination, event_id);",
    ),
    // `retention.bodies` (docs/design/event-log.md): the events that still have their body, in
    // id order, so emptying old bodies never walks those already emptied.
    (
        8,
        "CREATE INDEX events_body_kept ON hookflow.events (id) WHERE NOT body_pruned;",
    ),
];

/// The schema version this hookflow writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// The channel new events are announced on.
const CHANNEL: &str = "hookflow_new";

/// Most inserts committed together.
const MAX_BATCH: usize = 512;
/// Insert transactions of one relay at once. One: while a commit waits for the disk, the
/// requests that arrive meanwhile gather into the next batch, so batches grow with the load and
/// each costs one flush. (Measured with two relays: at 2 or 4 at once, commits overlap into
/// smaller batches and each request waits longer.)
const BATCHES_IN_FLIGHT: usize = 1;

/// How often a relay frees deliveries whose lease ran out.
const REAP_EVERY: Duration = Duration::from_millis(250);

/// Full rate-limit buckets are forgotten every this many reaps (about a minute).
const LANE_PRUNE_EVERY_REAPS: u64 = 240;

/// Connections in the pool.
const POOL_SIZE: usize = 16;

/// Where a PostgreSQL store is, as given (`postgres://user@host:5432/db?sslmode=verify-full`).
#[derive(Clone)]
pub struct PgLocation {
    config: tokio_postgres::Config,
    tls: TlsMode,
    root_cert: Option<std::path::PathBuf>,
    shown: String,
}

/// libpq's `sslmode`s, with libpq's meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TlsMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, its certificate not checked (libpq's default).
    Prefer,
    /// TLS or no connection, its certificate not checked.
    Require,
    /// TLS, the certificate checked against the roots, not the host name.
    VerifyCa,
    /// TLS, the certificate checked against the roots and the host name.
    VerifyFull,
}

impl std::fmt::Debug for PgLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Display for PgLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl PgLocation {
    /// Parses a `postgres://` or `postgresql://` URL. `sslmode` means what it means to libpq:
    /// `disable`, `prefer` (the default: TLS when offered, unchecked), `require` (TLS,
    /// unchecked), `verify-ca` (the certificate checked against the roots) or `verify-full`
    /// (and the host name: what a database across a network should use). The roots are the
    /// web's (Mozilla's list) plus `sslrootcert=FILE` (PEM), for a managed database's own CA.
    pub fn parse(url: &str) -> Result<PgLocation, String> {
        let parsed = url::Url::parse(url).map_err(|e| {
            format!(
                "{}: not a database URL ({e}); write postgres://USER@HOST:PORT/DATABASE",
                redact(url)
            )
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "{}: the store must be a postgres:// URL; for the embedded SQLite store leave it out and use --data DIR",
                redact(url)
            ));
        }
        let mut tls = TlsMode::Prefer;
        let mut root_cert = None;
        let mut kept = url::Url::parse(url).map_err(|e| e.to_string())?;
        let mut pairs = Vec::new();
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "sslmode" => {
                    tls = match v.as_ref() {
                        "disable" => TlsMode::Disable,
                        "allow" | "prefer" => TlsMode::Prefer,
                        "require" => TlsMode::Require,
                        "verify-ca" => TlsMode::VerifyCa,
                        "verify-full" => TlsMode::VerifyFull,
                        other => {
                            return Err(format!(
                                "{}: sslmode={other} is not a mode; use disable, prefer, require or verify-full",
                                redact(url)
                            ))
                        }
                    }
                }
                "sslrootcert" => root_cert = Some(std::path::PathBuf::from(v.as_ref())),
                _ => pairs.push((k.into_owned(), v.into_owned())),
            }
        }
        kept.set_query(None);
        if !pairs.is_empty() {
            kept.query_pairs_mut().extend_pairs(pairs);
        }
        let mut config: tokio_postgres::Config = kept
            .as_str()
            .parse()
            .map_err(|e| format!("{}: {e}", redact(url)))?;
        config.ssl_mode(match tls {
            TlsMode::Disable => tokio_postgres::config::SslMode::Disable,
            TlsMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("hookflow-relay");
        }
        config.options("-c plan_cache_mode=force_custom_plan");
        Ok(PgLocation {
            config,
            tls,
            root_cert,
            shown: redact(url),
        })
    }

    /// The URL without its password, and how TLS is used: for reports.
    pub fn describe(&self) -> String {
        let tls = match self.tls {
            TlsMode::Disable => "TLS off",
            TlsMode::Prefer => "TLS when the server offers it, certificate not checked",
            TlsMode::Require => "TLS, certificate not checked",
            TlsMode::VerifyCa => "TLS, certificate checked against the roots",
            TlsMode::VerifyFull => "TLS, certificate and host name checked",
        };
        format!("{} ({tls})", self.shown)
    }

    /// The database's name.
    pub fn database(&self) -> &str {
        self.config.get_dbname().unwrap_or("postgres")
    }

    fn connector(&self) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(file) = &self.root_cert {
            let pem = std::fs::read(file).map_err(|e| {
                StoreError::Unavailable(format!("sslrootcert {}: {e}", file.display()))
            })?;
            let mut added = 0;
            for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
                let cert: rustls::pki_types::CertificateDer<'static> = cert.map_err(|e| {
                    StoreError::Unavailable(format!(
                        "sslrootcert {}: not a PEM certificate ({e:?})",
                        file.display()
                    ))
                })?;
                roots.add(cert).map_err(|e| {
                    StoreError::Unavailable(format!("sslrootcert {}: {e}", file.display()))
                })?;
                added += 1;
            }
            if added == 0 {
                return Err(StoreError::Unavailable(format!(
                    "sslrootcert {}: no certificate in it",
                    file.display()
                )));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Unavailable(format!("TLS: {e}")))?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| StoreError::Unavailable(format!("TLS: {e}")))?;
        let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match self.tls {
            TlsMode::VerifyFull => verifier,
            TlsMode::VerifyCa => Arc::new(tls::ChainOnly(verifier)),
            TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => {
                Arc::new(tls::Unchecked(provider.signature_verification_algorithms))
            }
        };
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
    }
}

/// The certificate checks of `require` and `verify-ca`, as libpq makes them.
mod tls {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::client::WebPkiServerVerifier;
    use rustls::crypto::WebPkiSupportedAlgorithms;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};

    /// Any certificate (`prefer`, `require`): the session is encrypted and its handshake
    /// signed by the certificate's key, but who holds the key is not checked.
    #[derive(Debug)]
    pub struct Unchecked(pub WebPkiSupportedAlgorithms);

    impl ServerCertVerifier for Unchecked {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_schemes()
        }
    }

    /// The chain checked against the roots, not the host name (`verify-ca`).
    #[derive(Debug)]
    pub struct ChainOnly(pub Arc<WebPkiServerVerifier>);

    impl ServerCertVerifier for ChainOnly {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            match self
                .0
                .verify_server_cert(end_entity, intermediates, name, ocsp, now)
            {
                Err(Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            }
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.0.verify_tls12_signature(message, cert, dss)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.0.verify_tls13_signature(message, cert, dss)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }
}

/// The URL without its password.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "the store URL".to_string(),
    }
}

/// A database error with its causes (the server's own message comes as the source of
/// `tokio_postgres::Error`, whose text alone is just "db error").
fn db_error(what: &str, e: impl std::error::Error) -> StoreError {
    let mut text = format!("PostgreSQL: {what}: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    StoreError::Unavailable(text)
}

fn pool_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL: no connection: {e}"))
}

/// What [`PgStore::schema`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaState {
    /// The database's schema version (0: no hookflow tables yet).
    pub version: i32,
    /// This hookflow's.
    pub current: i32,
}

/// The PostgreSQL store. Cloning shares the pool.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("location", &self.inner.location)
            .field("relay_id", &self.inner.relay_id)
            .finish()
    }
}

struct Inner {
    pool: Pool,
    location: PgLocation,
    /// This relay's name in `deliveries.owner`.
    relay_id: String,
    inserts: mpsc::Sender<(NewEvent, oneshot::Sender<Result<Inserted, StoreError>>)>,
    records: mpsc::Sender<RecordJob>,
    /// When this relay last freed deliveries whose lease ran out.
    last_reap: Mutex<Instant>,
    /// How often it did.
    reaps: std::sync::atomic::AtomicU64,
    /// Where this relay's own new events go straight to its delivery worker, if it takes them.
    handoff: Mutex<Option<Handoff>>,
}

/// This relay's delivery worker takes the events this relay stores, up to the room it has: they
/// are stored already claimed by this relay (in flight, with a lease) and handed over in
/// memory, so the common path costs no claim and no announcement. Events past the room are
/// stored pending and announced, for any relay to claim.
#[derive(Clone)]
struct Handoff {
    tx: mpsc::UnboundedSender<HandedOff>,
    room: Arc<Semaphore>,
    lease: Duration,
    /// Deliveries never handed over (by endpoint and destination): those of batching lanes,
    /// which their lane's batches claim in arrival order.
    keep: KeepPending,
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

impl PgStore {
    /// Connects, checks (and with `migrate`, applies) the schema, and starts the insert batcher.
    pub async fn open(location: &PgLocation, migrate: bool) -> Result<PgStore, StoreError> {
        let tls = location.connector()?;
        let manager = Manager::from_config(
            location.config.clone(),
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| db_error("cannot make a connection pool", e))?;
        let state = schema_state(&pool, location).await?;
        if state.version > SCHEMA_VERSION {
            return Err(StoreError::Unavailable(format!(
                "{location}: made by a newer hookflow (schema {}, this one knows {SCHEMA_VERSION}); upgrade hookflow",
                state.version
            )));
        }
        if state.version < SCHEMA_VERSION {
            if !migrate {
                return Err(StoreError::Unavailable(format!(
                    "{location}: the store's schema is {} and this hookflow needs {SCHEMA_VERSION}; run `hookflow relay migrate --store URL` (or start the relay without --no-migrate)",
                    state.version
                )));
            }
            apply_migrations(&pool, location).await?;
        }
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        let (records, records_rx) = mpsc::channel(MAX_BATCH * 4);
        let inner = Arc::new(Inner {
            pool,
            location: location.clone(),
            relay_id: format!("relay-{}", ulid::Ulid::generate()),
            inserts: tx,
            records,
            last_reap: Mutex::new(Instant::now() - REAP_EVERY),
            reaps: Default::default(),
            handoff: Mutex::new(None),
        });
        tokio::spawn(batcher(Arc::downgrade(&inner), rx));
        tokio::spawn(record_batcher(Arc::downgrade(&inner), records_rx));
        Ok(PgStore { inner })
    }

    /// The schema version of the database (without changing it).
    pub async fn schema(location: &PgLocation) -> Result<SchemaState, StoreError> {
        let (client, connection) = location
            .config
            .connect(location.connector()?)
            .await
            .map_err(|e| db_error(&format!("cannot connect to {location}"), e))?;
        tokio::spawn(connection);
        read_version(&client, location)
            .await
            .map(|version| SchemaState {
                version,
                current: SCHEMA_VERSION,
            })
    }

    /// Applies pending migrations; returns the versions before and after.
    pub async fn migrate(location: &PgLocation) -> Result<(i32, i32), StoreError> {
        let before = Self::schema(location).await?.version;
        if before > SCHEMA_VERSION {
            return Err(StoreError::Unavailable(format!(
                "{location}: made by a newer hookflow (schema {before}, this one knows {SCHEMA_VERSION}); upgrade hookflow"
            )));
        }
        drop(Self::open(location, true).await?);
        Ok((before, SCHEMA_VERSION))
    }

    /// This relay's name in the `owner` column of the deliveries it claims.
    pub fn relay_id(&self) -> &str {
        &self.inner.relay_id
    }

    /// Wakes `wake` whenever any relay commits new events (`LISTEN hookflow_new`), until the
    /// store is dropped; reconnects after a lost connection.
    pub fn notify_new_events(&self, wake: Arc<Notify>) {
        let weak = Arc::downgrade(&self.inner);
        let location = self.inner.location.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            loop {
                if weak.strong_count() == 0 {
                    return;
                }
                match listen(&location, &wake, &weak).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN connection lost; polling until it is back");
                        // Whatever was announced meanwhile is found by polling.
                        wake.notify_one();
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
        });
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.inner.pool.get().await.map_err(pool_error)
    }

    /// Adds events moved from another store, with their state, attempts and due times, and the
    /// de-duplication keys it remembered; one transaction per call. An event already here (a
    /// move run again after it failed part way) is left as it is. Returns how many were new.
    pub async fn import(
        &self,
        events: &[StoredEvent],
        seen: &[SeenKey],
    ) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let fail = |e: tokio_postgres::Error| db_error("cannot import events", e);
        let tx = client.transaction().await.map_err(fail)?;
        let mut added = 0;
        if !events.is_empty() {
            let cols = EventColumns::of(events.iter().map(|x| &x.event.event));
            let received: Vec<f64> = events
                .iter()
                .map(|x| x.event.event.received_at as f64)
                .collect();
            let pairs: Vec<(&str, &Destination, &super::DeliveryState)> = events
                .iter()
                .flat_map(|x| {
                    x.event
                        .destinations
                        .iter()
                        .zip(&x.deliveries)
                        .map(|(d, st)| (x.event.event.id.as_str(), d, st))
                })
                .collect();
            let dcols = DeliveryColumns::of(pairs.iter().map(|(i, d, _)| (*i, *d)));
            let states: Vec<&str> = pairs
                .iter()
                .map(|(_, _, st)| if st.dead { "dead" } else { "pending" })
                .collect();
            let attempts: Vec<i32> = pairs
                .iter()
                .map(|(_, _, st)| i32::try_from(st.attempts).unwrap_or(i32::MAX))
                .collect();
            let due: Vec<f64> = pairs
                .iter()
                .map(|(_, _, st)| st.next_attempt_at as f64)
                .collect();
            let errors: Vec<Option<&str>> = pairs
                .iter()
                .map(|(_, _, st)| st.last_error.as_deref())
                .collect();
            let statuses: Vec<Option<i32>> = pairs
                .iter()
                .map(|(_, _, st)| st.last_status.map(i32::from))
                .collect();
            let mut params = cols.params();
            params.push(&received);
            params.extend(dcols.params());
            params
                .extend::<[&(dyn ToSql + Sync); 5]>([&states, &attempts, &due, &errors, &statuses]);
            let imported = tx
                .query_one(
                    "WITH e AS (
                         INSERT INTO hookflow.events (id, received_at, source, event_type,
                             payload, body_bytes, payload_kind, method, path, headers)
                         SELECT i, to_timestamp(r / 1000), s, t, p, b, k, m, pa, h
                         FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[],
                             $5::int8[], $6::text[], $7::text[], $8::text[], $9::text[],
                             $10::float8[]) AS x(i, s, t, p, b, k, m, pa, h, r)
                         ON CONFLICT (id) DO NOTHING
                         RETURNING id
                     ), d AS (
                         INSERT INTO hookflow.deliveries (event_id, destination, lane, token,
                             state, attempts, next_at, last_error, last_status, updated_at)
                         SELECT i, d, l, k, st, a, to_timestamp(n / 1000), err, status, now()
                         FROM unnest($11::text[], $12::text[], $13::text[], $14::text[],
                             $15::text[], $16::int4[], $17::float8[], $18::text[], $19::int4[])
                             AS x(i, d, l, k, st, a, n, err, status)
                         WHERE i IN (SELECT id FROM e)
                     )
                     SELECT count(*) FROM e",
                    &params,
                )
                .await
                .map_err(fail)?;
            added = imported.get::<_, i64>(0).max(0) as u64;
        }
        if !seen.is_empty() {
            let keys: Vec<&str> = seen.iter().map(|k| k.key.as_str()).collect();
            let ids: Vec<&str> = seen.iter().map(|k| k.event_id.as_str()).collect();
            let at: Vec<f64> = seen.iter().map(|k| k.at as f64).collect();
            tx.execute(
                "INSERT INTO hookflow.seen (key, event_id, at)
                 SELECT k, e, to_timestamp(a / 1000)
                 FROM unnest($1::text[], $2::text[], $3::float8[]) AS t(k, e, a)
                 ON CONFLICT (key) DO NOTHING",
                &[&keys, &ids, &at],
            )
            .await
            .map_err(fail)?;
        }
        if added > 0 {
            tx.execute("SELECT pg_notify($1, '')", &[&CHANNEL])
                .await
                .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)?;
        Ok(added)
    }

    /// From now on, hands up to `room` of this relay's new events at a time straight to the
    /// caller (its delivery worker), stored claimed with a `lease`; the rest, and deliveries
    /// `keep` names, are stored pending. Dropping the receiver stops it.
    pub fn hand_off_new_events(
        &self,
        room: usize,
        lease: Duration,
        keep: KeepPending,
    ) -> mpsc::UnboundedReceiver<HandedOff> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.inner.handoff.lock().unwrap_or_else(|e| e.into_inner()) = Some(Handoff {
            tx,
            room: Arc::new(Semaphore::new(room)),
            lease,
            keep,
        });
        rx
    }

    /// Takes a dispatch token of `lane` (`per_minute`, a minute's worth of burst) for the whole
    /// cluster, or gives the wait for one: when `book`, the lane's next free slot, booked for
    /// this delivery; otherwise the next token's time, booking nothing (a batching lane, whose
    /// next batch takes every delivery waiting). The same rule as the relay's own
    /// [`crate::limits::rate_limit::RateLimiter`], kept in the database so that N relays do not send
    /// N times the limit.
    pub async fn take_slot(
        &self,
        lane: &str,
        per_minute: u32,
        book: bool,
    ) -> Result<Result<(), Duration>, StoreError> {
        if per_minute == 0 {
            return Ok(Ok(()));
        }
        let client = self.client().await?;
        let fail = |e: tokio_postgres::Error| db_error("cannot take a dispatch slot", e);
        let rate = f64::from(per_minute);
        let take = client
            .prepare_cached(
                "WITH cur AS (
                     SELECT lane, least($2::float8, tokens + extract(epoch FROM now() - at) * $2::float8 / 60.0) AS t
                     FROM hookflow.lanes WHERE lane = $1 FOR UPDATE
                 )
                 UPDATE hookflow.lanes l SET
                     tokens = CASE WHEN cur.t >= 1 THEN cur.t - 1 ELSE cur.t END,
                     at = now(),
                     last_slot = CASE WHEN cur.t >= 1 OR NOT $3 THEN l.last_slot ELSE greatest(
                         now() + (1 - cur.t) * 60.0 / $2::float8 * interval '1 second',
                         l.last_slot + 60.0 / $2::float8 * interval '1 second') END
                 FROM cur WHERE l.lane = cur.lane
                 RETURNING cur.t >= 1, CASE WHEN $3 THEN extract(epoch FROM l.last_slot - now())::float8
                     ELSE (1 - cur.t) * 60.0 / $2::float8 END",
            )
            .await
            .map_err(fail)?;
        let mut row = client
            .query_opt(&take, &[&lane, &rate, &book])
            .await
            .map_err(fail)?;
        if row.is_none() {
            // A lane's first delivery (or its first since its bucket was full and forgotten).
            client
                .execute(
                    "INSERT INTO hookflow.lanes (lane, tokens, at, last_slot)
                     VALUES ($1, $2::float8, now(), now()) ON CONFLICT (lane) DO NOTHING",
                    &[&lane, &rate],
                )
                .await
                .map_err(fail)?;
            row = client
                .query_opt(&take, &[&lane, &rate, &book])
                .await
                .map_err(fail)?;
        }
        let Some(row) = row else {
            return Err(StoreError::Unavailable(format!(
                "{}: the dispatch lane {lane} vanished",
                self.inner.location
            )));
        };
        if row.get::<_, bool>(0) {
            return Ok(Ok(()));
        }
        let wait: f64 = row.get(1);
        Ok(Err(Duration::from_secs_f64(wait.max(0.0))))
    }

    /// Forgets lanes whose buckets are full again and have no slot booked ahead (forgetting them
    /// changes nothing), so made-up repository names cannot grow the table without end.
    async fn prune_lanes(client: &deadpool_postgres::Client) -> Result<u64, tokio_postgres::Error> {
        client
            .execute(
                "DELETE FROM hookflow.lanes
                 WHERE at < now() - interval '61 seconds' AND last_slot < now()",
                &[],
            )
            .await
    }

    /// The connection pool's figures.
    pub fn pool_status(&self) -> super::PoolStatus {
        let s = self.inner.pool.status();
        super::PoolStatus {
            open: s.size,
            idle: s.available,
            waiting: s.waiting,
            max: s.max_size,
        }
    }
}

async fn read_version(
    client: &tokio_postgres::Client,
    location: &PgLocation,
) -> Result<i32, StoreError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('hookflow.schema_migrations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(|e| db_error(&format!("cannot read {location}"), e))?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: Option<i32> = client
        .query_one("SELECT max(version) FROM hookflow.schema_migrations", &[])
        .await
        .map_err(|e| db_error("cannot read the schema version", e))?
        .get(0);
    Ok(v.unwrap_or(0))
}

async fn schema_state(pool: &Pool, location: &PgLocation) -> Result<SchemaState, StoreError> {
    let client = pool
        .get()
        .await
        .map_err(|e| db_error(&format!("cannot connect to {location}"), e))?;
    Ok(SchemaState {
        version: read_version(&client, location).await?,
        current: SCHEMA_VERSION,
    })
}

/// Applies every migration the database lacks, under an advisory lock (relays starting together
/// wait for the first to finish).
async fn apply_migrations(pool: &Pool, location: &PgLocation) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| db_error("cannot start the migration", e))?;
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(7279431580416);
         CREATE SCHEMA IF NOT EXISTS hookflow;
         CREATE TABLE IF NOT EXISTS hookflow.schema_migrations (
             version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());",
    )
    .await
    .map_err(|e| db_error(&format!("cannot prepare {location} for hookflow"), e))?;
    let have: Option<i32> = tx
        .query_one("SELECT max(version) FROM hookflow.schema_migrations", &[])
        .await
        .map_err(|e| db_error("cannot read the schema version", e))?
        .get(0);
    for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > have.unwrap_or(0)) {
        tx.batch_execute(sql)
            .await
            .map_err(|e| db_error(&format!("migration {v}"), e))?;
        tx.execute(
            "INSERT INTO hookflow.schema_migrations (version) VALUES ($1)",
            &[v],
        )
        .await
        .map_err(|e| db_error(&format!("migration {v}"), e))?;
    }
    tx.commit()
        .await
        .map_err(|e| db_error("cannot commit the migration", e))
}

/// One LISTEN session: returns `Ok` when the store is gone, `Err` when the connection is.
async fn listen(
    location: &PgLocation,
    wake: &Notify,
    alive: &std::sync::Weak<Inner>,
) -> Result<(), StoreError> {
    let (client, mut connection) = location
        .config
        .connect(location.connector()?)
        .await
        .map_err(|e| db_error("cannot connect to LISTEN", e))?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => {
                    if tx.send(()).is_err() {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(|e| db_error("cannot LISTEN", e))?;
    loop {
        tokio::select! {
            got = rx.recv() => match got {
                Some(()) => wake.notify_one(),
                None => break,
            },
            _ = tokio::time::sleep(Duration::from_secs(30)) => {
                if alive.strong_count() == 0 {
                    return Ok(());
                }
                // Keeps the session's liveness visible; a dead connection errors here.
                client.simple_query("SELECT 1").await.map_err(|e| db_error("LISTEN session", e))?;
            }
        }
        if alive.strong_count() == 0 {
            return Ok(());
        }
    }
    match driver.await {
        Ok(Err(e)) => Err(db_error("LISTEN session", e)),
        _ => Err(StoreError::Unavailable(
            "PostgreSQL: LISTEN session ended".into(),
        )),
    }
}

type InsertJob = (NewEvent, oneshot::Sender<Result<Inserted, StoreError>>);

/// Collects concurrent inserts into batches, each committed in one transaction
/// ([`BATCHES_IN_FLIGHT`] at once).
async fn batcher(inner: std::sync::Weak<Inner>, mut rx: mpsc::Receiver<InsertJob>) {
    let slots = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    let mut last_prune = Instant::now() - Duration::from_secs(3600);
    while let Some(first) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let prune = last_prune.elapsed() > Duration::from_secs(600);
        if prune {
            last_prune = Instant::now();
        }
        tokio::spawn(async move {
            let events: Vec<NewEvent> = jobs.iter().map(|(e, _)| e.clone()).collect();
            let result = insert_batch(&inner, &events, prune).await;
            match result {
                Ok(results) => {
                    for ((_, reply), r) in jobs.into_iter().zip(results) {
                        let _ = reply.send(Ok(r));
                    }
                }
                Err(e) => {
                    for (_, reply) in jobs {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            drop(permit);
        });
    }
}

/// Events as the column arrays of one `unnest`: id, source, event type, payload, its size, its
/// kind, and the request's method, path and headers.
struct EventColumns<'a> {
    ids: Vec<&'a str>,
    sources: Vec<&'a str>,
    types: Vec<&'a str>,
    payloads: Vec<&'a [u8]>,
    sizes: Vec<i64>,
    kinds: Vec<&'static str>,
    methods: Vec<Option<&'a str>>,
    paths: Vec<Option<&'a str>>,
    headers: Vec<Option<String>>,
}

impl<'a> EventColumns<'a> {
    /// The arrays as statement parameters, in field order ($1 … $9 when first).
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.ids,
            &self.sources,
            &self.types,
            &self.payloads,
            &self.sizes,
            &self.kinds,
            &self.methods,
            &self.paths,
            &self.headers,
        ]
    }

    fn of(events: impl Iterator<Item = &'a Event>) -> EventColumns<'a> {
        let mut c = EventColumns {
            ids: Vec::new(),
            sources: Vec::new(),
            types: Vec::new(),
            payloads: Vec::new(),
            sizes: Vec::new(),
            kinds: Vec::new(),
            methods: Vec::new(),
            paths: Vec::new(),
            headers: Vec::new(),
        };
        for e in events {
            let (kind, bytes, method, path, headers) = e.payload.columns();
            c.ids.push(&e.id);
            c.sources.push(&e.source);
            c.types.push(&e.event_type);
            c.payloads.push(bytes);
            c.sizes.push(bytes.len() as i64);
            c.kinds.push(kind);
            c.methods.push(method);
            c.paths.push(path);
            c.headers.push(headers);
        }
        c
    }
}

/// Deliveries as the column arrays of one `unnest`: event id, destination, lane, credential.
struct DeliveryColumns<'a> {
    event_ids: Vec<&'a str>,
    destinations: Vec<String>,
    lanes: Vec<String>,
    tokens: Vec<Option<String>>,
}

impl<'a> DeliveryColumns<'a> {
    /// The arrays as statement parameters: event ids, destinations, lanes, credentials.
    fn params(&self) -> [&(dyn ToSql + Sync); 4] {
        [
            &self.event_ids,
            &self.destinations,
            &self.lanes,
            &self.tokens,
        ]
    }

    fn of(deliveries: impl Iterator<Item = (&'a str, &'a Destination)>) -> DeliveryColumns<'a> {
        let mut c = DeliveryColumns {
            event_ids: Vec::new(),
            destinations: Vec::new(),
            lanes: Vec::new(),
            tokens: Vec::new(),
        };
        for (id, d) in deliveries {
            c.event_ids.push(id);
            c.destinations.push(d.key());
            c.lanes.push(d.lane());
            c.tokens.push(d.token_column());
        }
        c
    }
}

/// The deliveries of events, by event id, each in the order they were made (without their
/// attempts).
async fn deliveries_of(
    client: &deadpool_postgres::Client,
    ids: &[&str],
) -> Result<std::collections::HashMap<String, Vec<LoggedDelivery>>, StoreError> {
    let mut out: std::collections::HashMap<String, Vec<LoggedDelivery>> = Default::default();
    if ids.is_empty() {
        return Ok(out);
    }
    for r in client
        .query(
            "SELECT id, event_id, destination, state, attempts, chain, last_status, last_error,
                    (extract(epoch FROM CASE WHEN state = 'pending' THEN next_at ELSE updated_at END)
                     * 1000)::int8
             FROM hookflow.deliveries WHERE event_id = ANY($1) ORDER BY id",
            &[&ids],
        )
        .await
        .map_err(|e| db_error("cannot read deliveries", e))?
    {
        out.entry(r.get(1)).or_default().push(LoggedDelivery {
            id: r.get::<_, i64>(0).to_string(),
            destination: r.get(2),
            status: DeliveryStatus::parse(r.get(3)).unwrap_or(DeliveryStatus::Pending),
            attempts: r.get::<_, i32>(4).max(0) as u32,
            chain: r.get::<_, i32>(5).max(0) as u32,
            last_status: r
                .get::<_, Option<i32>>(6)
                .and_then(|s| u16::try_from(s).ok()),
            last_error: r.get(7),
            next_at: r.get(8),
            tries: Vec::new(),
        });
    }
    Ok(out)
}

/// The event in a row's columns from `at`: id, received_at (ms), source, event_type, payload,
/// payload_kind, method, path, headers.
fn event_at(r: &tokio_postgres::Row, at: usize) -> Event {
    Event {
        id: r.get(at),
        received_at: r.get(at + 1),
        source: r.get(at + 2),
        event_type: r.get(at + 3),
        payload: Payload::from_columns(
            r.get(at + 5),
            r.get(at + 4),
            r.get(at + 6),
            r.get(at + 7),
            r.get(at + 8),
        ),
    }
}

/// Stores a batch in one transaction: de-duplication keys, events, deliveries, then a NOTIFY.
/// Without de-duplication keys, one statement.
async fn insert_batch(
    inner: &Inner,
    events: &[NewEvent],
    prune: bool,
) -> Result<Vec<Inserted>, StoreError> {
    let mut client = inner.pool.get().await.map_err(pool_error)?;
    if !prune && events.iter().all(|e| e.dedupe_key.is_none()) {
        let all: Vec<&NewEvent> = events.iter().collect();
        let claimed = write_new(inner, &client, &all).await?;
        claimed.send();
        return Ok(vec![Inserted::New; events.len()]);
    }
    let tx = client
        .transaction()
        .await
        .map_err(|e| db_error("cannot start a transaction", e))?;
    let fail = |e: tokio_postgres::Error| db_error("cannot store events", e);
    if prune {
        tx.execute(
            &tx.prepare_cached(
                "DELETE FROM hookflow.seen WHERE at < now() - $1 * interval '1 millisecond'",
            )
            .await
            .map_err(fail)?,
            &[&(DEDUPE_WINDOW_MS as f64)],
        )
        .await
        .map_err(fail)?;
    }
    let mut results: Vec<Option<Inserted>> = vec![None; events.len()];
    // The first event of each key in the batch tries to take the key; later ones in the batch
    // repeat it (or whatever holds the key).
    let mut first_of_key: std::collections::HashMap<&str, usize> = Default::default();
    let mut repeats_in_batch = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if let Some(key) = &e.dedupe_key {
            match first_of_key.get(key.as_str()) {
                Some(&first) => repeats_in_batch.push((i, first)),
                None => {
                    first_of_key.insert(key, i);
                }
            }
        }
    }
    if !first_of_key.is_empty() {
        let keys: Vec<&str> = first_of_key.keys().copied().collect();
        let ids: Vec<&str> = keys
            .iter()
            .map(|k| events[first_of_key[k]].event.id.as_str())
            .collect();
        let taken: std::collections::HashSet<String> = tx
            .query(
                &tx.prepare_cached(
                    "INSERT INTO hookflow.seen (key, event_id, at)
                 SELECT k, e, now() FROM unnest($1::text[], $2::text[]) AS t(k, e)
                 ON CONFLICT (key) DO NOTHING RETURNING key",
                )
                .await
                .map_err(fail)?,
                &[&keys, &ids],
            )
            .await
            .map_err(fail)?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        let (held_keys, held_ids): (Vec<&str>, Vec<&str>) = keys
            .iter()
            .zip(&ids)
            .filter(|(k, _)| !taken.contains(**k))
            .map(|(k, i)| (*k, *i))
            .unzip();
        if !held_keys.is_empty() {
            // A key whose first event is a dead letter (every delivery dead) is taken over:
            // a sender's retry of a failed delivery is a new chance, not a repeat.
            let taken_over: std::collections::HashSet<String> = tx.query(
            &tx.prepare_cached("UPDATE hookflow.seen s SET event_id = t.e, at = now()
                     FROM unnest($1::text[], $2::text[]) AS t(k, e)
                     WHERE s.key = t.k
                       AND EXISTS (SELECT 1 FROM hookflow.deliveries d WHERE d.event_id = s.event_id)
                       AND NOT EXISTS (SELECT 1 FROM hookflow.deliveries d
                                       WHERE d.event_id = s.event_id AND d.state <> 'dead')
                     RETURNING s.key").await.map_err(fail)?,
                    &[&held_keys, &held_ids],
                )
                .await
                .map_err(fail)?
                .into_iter()
                .map(|r| r.get(0))
                .collect();
            let still_held: Vec<&str> = held_keys
                .iter()
                .copied()
                .filter(|k| !taken_over.contains(*k))
                .collect();
            if !still_held.is_empty() {
                for row in tx
                    .query(
                        &tx.prepare_cached(
                            "SELECT key, event_id FROM hookflow.seen WHERE key = ANY($1)",
                        )
                        .await
                        .map_err(fail)?,
                        &[&still_held],
                    )
                    .await
                    .map_err(fail)?
                {
                    let key: String = row.get(0);
                    let holder: String = row.get(1);
                    if let Some(&i) = first_of_key.get(key.as_str()) {
                        results[i] = Some(Inserted::Duplicate(holder));
                    }
                }
            }
        }
    }
    for (i, first) in repeats_in_batch {
        results[i] = Some(match &results[first] {
            Some(Inserted::Duplicate(holder)) => Inserted::Duplicate(holder.clone()),
            _ => Inserted::Duplicate(events[first].event.id.clone()),
        });
    }
    let new: Vec<&NewEvent> = events
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_none())
        .map(|(e, _)| e)
        .collect();
    let claimed = write_new(inner, &tx, &new).await?;
    tx.commit()
        .await
        .map_err(|e| db_error("cannot commit events", e))?;
    claimed.send();
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or(Inserted::New))
        .collect())
}

/// Events stored claimed for this relay's worker, with the worker's channel whose room they
/// took: handed over once committed.
#[derive(Default)]
struct ToHandOff {
    to: Option<mpsc::UnboundedSender<HandedOff>>,
    claimed: Vec<HandedOff>,
}

impl ToHandOff {
    /// Gives the worker its events (after their commit). A worker that stopped meanwhile:
    /// their claims run out and any relay delivers them.
    fn send(self) {
        if let Some(to) = self.to {
            for h in self.claimed {
                let _ = to.send(h);
            }
        }
    }
}

/// Writes new events and their deliveries in one statement (so without de-duplication keys a
/// batch is one round trip and one commit): as many as the worker has room for stored claimed by
/// this relay, to be handed over after the commit, the rest pending and announced.
async fn write_new(
    inner: &Inner,
    client: &impl deadpool_postgres::GenericClient,
    new: &[&NewEvent],
) -> Result<ToHandOff, StoreError> {
    if new.is_empty() {
        return Ok(ToHandOff::default());
    }
    let fail = |e: tokio_postgres::Error| db_error("cannot store events", e);
    let handoff = inner
        .handoff
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .filter(|h| !h.tx.is_closed());
    let deliveries: Vec<(&str, &Destination)> = new
        .iter()
        .flat_map(|e| e.destinations.iter().map(|d| (e.event.id.as_str(), d)))
        .collect();
    let sources = new
        .iter()
        .flat_map(|e| e.destinations.iter().map(|_| e.event.source.as_str()));
    // A place in the worker's queue for each delivery handed over, as long as there is room.
    let mut room_left = handoff.is_some();
    let permits: Vec<Option<tokio::sync::OwnedSemaphorePermit>> = deliveries
        .iter()
        .zip(sources)
        .map(|((_, d), source)| {
            let h = handoff
                .as_ref()
                .filter(|h| room_left && !(h.keep)(source, d))?;
            let permit = h.room.clone().try_acquire_owned().ok();
            room_left = permit.is_some();
            permit
        })
        .collect();
    let lease_ms = handoff.as_ref().map_or(0.0, |h| millis(h.lease));
    let claims: Vec<Option<String>> = permits
        .iter()
        .map(|p| p.as_ref().map(|_| claim_token()))
        .collect();
    let cols = EventColumns::of(new.iter().map(|e| &e.event));
    let dcols = DeliveryColumns::of(deliveries.iter().copied());
    let announce = permits.iter().any(Option::is_none);
    let delivery_keys: Vec<Option<&str>> = new
        .iter()
        .map(|e| e.dedupe_key.as_deref().and_then(super::sender_delivery_id))
        .collect();
    let mut params = cols.params();
    params.extend(dcols.params());
    params.extend::<[&(dyn ToSql + Sync); 5]>([
        &claims,
        &inner.relay_id,
        &lease_ms,
        &announce,
        &delivery_keys,
    ]);
    let statement = client
        .prepare_cached(
            "WITH e AS (
                 INSERT INTO hookflow.events (id, received_at, source, event_type, payload,
                     body_bytes, payload_kind, method, path, headers, delivery_key)
                 SELECT i, now(), s, t, p, b, k, m, pa, h, dk
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::int8[],
                     $6::text[], $7::text[], $8::text[], $9::text[], $18::text[])
                     AS x(i, s, t, p, b, k, m, pa, h, dk)
             ), d AS (
                 INSERT INTO hookflow.deliveries (event_id, destination, lane, token, state,
                     next_at, updated_at, owner, claim, lease_until)
                 SELECT i, d, l, k, CASE WHEN c IS NULL THEN 'pending' ELSE 'inflight' END,
                     now(), now(), CASE WHEN c IS NULL THEN NULL ELSE $15::text END, c::uuid,
                     CASE WHEN c IS NULL THEN NULL
                          ELSE now() + $16::float8 * interval '1 millisecond' END
                 FROM unnest($10::text[], $11::text[], $12::text[], $13::text[], $14::text[])
                     AS x(i, d, l, k, c)
                 RETURNING id, claim
             )
             SELECT (SELECT array_agg(id) FROM d WHERE claim IS NOT NULL),
                    (SELECT array_agg(claim::text) FROM d WHERE claim IS NOT NULL),
                    CASE WHEN $17::bool THEN pg_notify('hookflow_new', '') END", // CHANNEL
        )
        .await
        .map_err(fail)?;
    let row = client.query_one(&statement, &params).await.map_err(fail)?;
    let delivery_ids: Vec<i64> = row.get::<_, Option<Vec<i64>>>(0).unwrap_or_default();
    let claim_texts: Vec<String> = row.get::<_, Option<Vec<String>>>(1).unwrap_or_default();
    let by_claim: std::collections::HashMap<&str, i64> = claim_texts
        .iter()
        .map(String::as_str)
        .zip(delivery_ids)
        .collect();
    let mut out = ToHandOff {
        to: handoff.map(|h| h.tx),
        claimed: Vec::with_capacity(permits.len()),
    };
    let mut shared: std::collections::HashMap<&str, Arc<Event>> = Default::default();
    let events: std::collections::HashMap<&str, &Event> = new
        .iter()
        .map(|e| (e.event.id.as_str(), &e.event))
        .collect();
    for (((event_id, destination), claim), room) in deliveries.iter().zip(claims).zip(permits) {
        let (Some(claim), Some(room), Some(event)) = (claim, room, events.get(event_id)) else {
            continue;
        };
        let Some(id) = by_claim.get(claim.as_str()) else {
            continue;
        };
        let event = shared
            .entry(event_id)
            .or_insert_with(|| Arc::new((*event).clone()))
            .clone();
        out.claimed.push(HandedOff {
            claimed: Claimed {
                id: id.to_string(),
                destination: (*destination).clone(),
                event,
                attempts: 0,
                claim,
            },
            room,
        });
    }
    Ok(out)
}

/// A new claim token in a UUID's form: a ULID's 128 bits (80 of them random), unique across
/// relays as `gen_random_uuid()`'s are.
fn claim_token() -> String {
    let h = format!("{:032x}", ulid::Ulid::generate().0);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// What a claim returns: the delivery's columns, its `next_at` at 5, its event from 6 on
/// ([`claimed_rows`] reads them).
const CLAIM_RETURNING: &str = "WHERE d.id = c.id AND e.id = d.event_id
    RETURNING d.id, d.destination, d.token, d.attempts, d.claim::text, d.next_at,
        e.id, (extract(epoch FROM e.received_at) * 1000)::int8, e.source,
        e.event_type, e.payload, e.payload_kind, e.method, e.path, e.headers";

/// Claimed deliveries from the rows a claim returns (the delivery's columns, its `next_at` at
/// 5, its event from 6 on), in the order they were due; the deliveries of one event share it.
fn claimed_rows(rows: Vec<tokio_postgres::Row>) -> Vec<Claimed> {
    let mut events: std::collections::HashMap<String, Arc<Event>> = Default::default();
    let mut claimed: Vec<(std::time::SystemTime, i64, Claimed)> = rows
        .into_iter()
        .map(|r| {
            let id: i64 = r.get(0);
            let event_id: String = r.get(6);
            let event = events
                .entry(event_id)
                .or_insert_with(|| Arc::new(event_at(&r, 6)))
                .clone();
            (
                r.get::<_, std::time::SystemTime>(5),
                id,
                Claimed {
                    id: id.to_string(),
                    destination: Destination::from_columns(r.get(1), r.get(2)),
                    event,
                    attempts: r.get::<_, i32>(3).max(0) as u32,
                    claim: r.get(4),
                },
            )
        })
        .collect();
    claimed.sort_by_key(|c| (c.0, c.1));
    claimed.into_iter().map(|(_, _, c)| c).collect()
}

/// Writes results in one transaction (one commit for every delivery that finished meanwhile);
/// for each, whether its claim was current. When every result is a delivery done (the common
/// case under load), one statement.
async fn record_batch(
    inner: &Inner,
    results: &[(ClaimRef, Recorded)],
) -> Result<Vec<bool>, StoreError> {
    let mut client = inner.pool.get().await.map_err(pool_error)?;
    let fail = |e: tokio_postgres::Error| db_error("cannot record results", e);
    let mut recorded = vec![false; results.len()];
    // A malformed reference names no delivery: it is not recorded.
    let valid: Vec<(usize, i64, &str, &Recorded)> = results
        .iter()
        .enumerate()
        .filter_map(
            |(i, (c, r))| match (c.id.parse::<i64>(), uuid_text(&c.claim)) {
                (Ok(id), Ok(claim)) => Some((i, id, claim, r)),
                _ => None,
            },
        )
        .collect();
    let (done, other): (Vec<_>, Vec<_>) = valid
        .into_iter()
        .partition(|(_, _, _, r)| matches!(r, Recorded::Delivered { .. }));
    if other.is_empty() {
        write_results(
            &Db::Client(&client),
            &inner.relay_id,
            &done,
            &[],
            &mut recorded,
        )
        .await?;
    } else {
        let tx = client.transaction().await.map_err(fail)?;
        write_results(&Db::Tx(&tx), &inner.relay_id, &done, &other, &mut recorded).await?;
        tx.commit().await.map_err(fail)?;
    }
    Ok(recorded)
}

type ResultRow<'a> = (usize, i64, &'a str, &'a Recorded);

async fn write_results(
    db: &Db<'_>,
    relay: &str,
    done: &[ResultRow<'_>],
    other: &[ResultRow<'_>],
    recorded: &mut [bool],
) -> Result<(), StoreError> {
    let fail = |e: tokio_postgres::Error| db_error("cannot record results", e);
    if !done.is_empty() {
        let ids: Vec<i64> = done.iter().map(|d| d.1).collect();
        let claims: Vec<&str> = done.iter().map(|d| d.2).collect();
        let tried: Vec<Option<&super::Tried>> = done.iter().map(|d| d.3.tried()).collect();
        let took: Vec<Option<i32>> = tried.iter().map(|t| t.map(|t| took_ms(t.took))).collect();
        let statuses: Vec<Option<i32>> = tried
            .iter()
            .map(|t| t.and_then(|t| t.status).map(i32::from))
            .collect();
        let batches: Vec<Option<&str>> = tried
            .iter()
            .map(|t| t.and_then(|t| t.batch_id.as_deref()))
            .collect();
        let at: std::collections::HashMap<i64, usize> = done.iter().map(|d| (d.1, d.0)).collect();
        // Kept as the event log's record, with the attempt, in one statement. A claim token
        // is set only while a delivery is in flight. (No `state` test: it would invite the
        // planner to read the whole lease index, dead entries and all, instead of finding
        // each delivery by its key.)
        let rows = db
            .query(
                "WITH done AS (
                     UPDATE hookflow.deliveries d SET state = 'delivered', claim = NULL,
                         owner = NULL, lease_until = NULL, attempts = d.attempts + 1,
                         last_status = t.status, last_error = NULL, updated_at = now(),
                         deferred_for = NULL,
                         token = CASE WHEN d.token LIKE 'inline:%' THEN 'inline:' ELSE d.token END
                     FROM unnest($1::int8[], $2::text[], $3::int4[], $4::int4[], $5::text[])
                         AS t(id, claim, took, status, batch)
                     WHERE d.id = t.id AND d.claim = t.claim::uuid
                     RETURNING d.id, d.event_id, d.chain, t.took, t.status, t.batch
                 ), logged AS (
                     INSERT INTO hookflow.attempts (delivery_id, event_id, chain, at, took_ms,
                         status, outcome, relay, batch_id)
                     SELECT id, event_id, chain,
                         now() - took * interval '1 millisecond', took, status, 'delivered',
                         $6, batch
                     FROM done WHERE took IS NOT NULL
                 )
                 SELECT id FROM done",
                &[&ids, &claims, &took, &statuses, &batches, &relay],
            )
            .await
            .map_err(fail)?;
        for row in rows {
            if let Some(&i) = at.get(&row.get::<_, i64>(0)) {
                recorded[i] = true;
            }
        }
    }
    for (i, id, claim, result) in other {
        // The attempt (when a request was made) goes in with the result.
        let tried = result.tried();
        let took = tried.map(|t| took_ms(t.took));
        let status = tried.and_then(|t| t.status).map(i32::from);
        let batch = tried.and_then(|t| t.batch_id.as_deref());
        let outcome = super::attempt_outcome(result);
        let log = "logged AS (
                 INSERT INTO hookflow.attempts (delivery_id, event_id, chain, at, took_ms,
                     status, outcome, message, relay, batch_id)
                 SELECT id, event_id, chain, now() - $5::int4 * interval '1 millisecond', $5,
                     $6, $7, $8, $9, $10
                 FROM u WHERE $5::int4 IS NOT NULL
             )
             SELECT count(*) FROM u";
        let changed = match *result {
            Recorded::Delivered { .. } => continue,
            Recorded::RetryAfter {
                delay, ref error, ..
            } => {
                db.query_one(
                    &format!(
                        "WITH u AS (
                             UPDATE hookflow.deliveries SET state = 'pending', claim = NULL,
                                 owner = NULL, attempts = attempts + 1,
                                 next_at = now() + $3 * interval '1 millisecond',
                                 last_error = $4, updated_at = now(), deferred_for = NULL
                             WHERE id = $1 AND claim = $2::text::uuid
                             RETURNING id, event_id, chain
                         ), {log}"
                    ),
                    &[
                        &id,
                        &claim,
                        &millis(*delay),
                        error,
                        &took,
                        &status,
                        &outcome,
                        error,
                        &relay,
                        &batch,
                    ],
                )
                .await
            }
            Recorded::Defer { delay } | Recorded::RateLimited { delay } => {
                let rate = matches!(result, Recorded::RateLimited { .. }).then_some("rate");
                db.execute(
                    "UPDATE hookflow.deliveries SET state = 'pending', claim = NULL, owner = NULL,
                         next_at = now() + $3 * interval '1 millisecond', updated_at = now(),
                         deferred_for = $4
                     WHERE id = $1 AND claim = $2::text::uuid",
                    &[&id, &claim, &millis(*delay), &rate],
                )
                .await
                .map(|n| {
                    recorded[*i] = n > 0;
                })
                .map_err(fail)?;
                continue;
            }
            Recorded::Dead {
                ref error,
                status: dead_status,
                ..
            } => {
                db.query_one(
                    &format!(
                        "WITH u AS (
                             UPDATE hookflow.deliveries SET state = 'dead', claim = NULL,
                                 owner = NULL, attempts = attempts + 1, last_error = $3,
                                 last_status = $4, updated_at = now(), deferred_for = NULL
                             WHERE id = $1 AND claim = $2::text::uuid
                             RETURNING id, event_id, chain
                         ), {log}"
                    ),
                    &[
                        &id,
                        &claim,
                        error,
                        &dead_status.map(i32::from),
                        &took,
                        &status,
                        &outcome,
                        error,
                        &relay,
                        &batch,
                    ],
                )
                .await
            }
        }
        .map_err(fail)?;
        recorded[*i] = changed.get::<_, i64>(0) > 0;
    }
    Ok(())
}

/// An attempt's duration in whole milliseconds, as the log keeps it.
fn took_ms(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// A pooled connection, or a transaction on one: statements come from the connection's cache.
enum Db<'a> {
    Client(&'a deadpool_postgres::Client),
    Tx(&'a deadpool_postgres::Transaction<'a>),
}

impl Db<'_> {
    async fn statement(
        &self,
        sql: &str,
    ) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
        match self {
            Db::Client(c) => c.prepare_cached(sql).await,
            Db::Tx(t) => t.prepare_cached(sql).await,
        }
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        match self {
            Db::Client(c) => c.query(&statement, params).await,
            Db::Tx(t) => t.query(&statement, params).await,
        }
    }

    async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<tokio_postgres::Row, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        match self {
            Db::Client(c) => c.query_one(&statement, params).await,
            Db::Tx(t) => t.query_one(&statement, params).await,
        }
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        match self {
            Db::Client(c) => c.execute(&statement, params).await,
            Db::Tx(t) => t.execute(&statement, params).await,
        }
    }
}

type RecordJob = (
    Vec<(ClaimRef, Recorded)>,
    oneshot::Sender<Result<usize, StoreError>>,
);

/// Collects the results of concurrent deliveries into one transaction each round.
async fn record_batcher(inner: std::sync::Weak<Inner>, mut rx: mpsc::Receiver<RecordJob>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let all: Vec<(ClaimRef, Recorded)> =
            jobs.iter().flat_map(|(r, _)| r.iter().cloned()).collect();
        match record_batch(&inner, &all).await {
            Ok(done) => {
                let mut done = done.into_iter();
                for (results, reply) in jobs {
                    let n = done.by_ref().take(results.len()).filter(|d| *d).count();
                    let _ = reply.send(Ok(n));
                }
            }
            Err(e) => {
                for (_, reply) in jobs {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

fn millis(d: Duration) -> f64 {
    d.as_millis() as f64
}

impl Store for PgStore {
    async fn insert(&self, event: NewEvent) -> Result<Inserted, StoreError> {
        let (reply, wait) = oneshot::channel();
        self.inner
            .inserts
            .send((event, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        let inserted = wait.await.map_err(|_| StoreError::Closed)?;
        inserted
    }

    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Claimed>, StoreError> {
        let client = self.client().await?;
        let fail = |e: tokio_postgres::Error| db_error("cannot claim deliveries", e);
        // Leases that ran out: due again, and their claims void. Any relay may do this; each
        // does it now and then, not at every claim.
        let reap = {
            let mut last = self
                .inner
                .last_reap
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let due = last.elapsed() >= REAP_EVERY;
            if due {
                *last = Instant::now();
            }
            due
        };
        if reap {
            client
                .execute(
                    &client.prepare_cached("UPDATE hookflow.deliveries SET state = 'pending', claim = NULL, owner = NULL,
                     next_at = least(next_at, now()), updated_at = now()
                 WHERE state = 'inflight' AND lease_until < now()").await.map_err(fail)?,
                    &[],
                )
                .await
                .map_err(fail)?;
            // About once a minute: forget full rate-limit buckets.
            let reaps = self
                .inner
                .reaps
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if reaps.is_multiple_of(LANE_PRUNE_EVERY_REAPS) {
                Self::prune_lanes(&client).await.map_err(fail)?;
            }
        }
        let rows = client
            .query(
                &client
                    .prepare_cached(&format!(
                        "UPDATE hookflow.deliveries d
                 SET state = 'inflight', owner = $1, claim = gen_random_uuid(),
                     lease_until = now() + $3 * interval '1 millisecond', updated_at = now()
                 FROM (SELECT id FROM hookflow.deliveries
                       WHERE state = 'pending' AND next_at <= now()
                       ORDER BY next_at, id
                       FOR UPDATE SKIP LOCKED
                       LIMIT $2) c, hookflow.events e
                 {CLAIM_RETURNING}"
                    ))
                    .await
                    .map_err(fail)?,
                &[&self.inner.relay_id, &(limit as i64), &millis(lease)],
            )
            .await
            .map_err(fail)?;
        Ok(claimed_rows(rows))
    }

    async fn claim_lane(
        &self,
        leader: &Claimed,
        members: Vec<ClaimRef>,
        batch_id: String,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, StoreError> {
        let mut client = self.client().await?;
        let fail = |e: tokio_postgres::Error| db_error("cannot claim a batch", e);
        let tx = client.transaction().await.map_err(fail)?;
        let rows = if limit == 0 {
            Vec::new()
        } else {
            let claim = tx
                .prepare_cached(&format!(
                    "UPDATE hookflow.deliveries d
                     SET state = 'inflight', owner = $1, claim = gen_random_uuid(),
                         lease_until = now() + $3 * interval '1 millisecond', updated_at = now(),
                         batch_id = $6
                     FROM (SELECT p.id FROM hookflow.deliveries p
                           JOIN hookflow.events pe ON pe.id = p.event_id
                           WHERE p.lane = $4 AND p.state = 'pending' AND pe.source = $5
                             AND (p.next_at <= now() OR p.deferred_for = 'rate')
                           ORDER BY p.id
                           FOR UPDATE OF p SKIP LOCKED
                           LIMIT $2) c, hookflow.events e
                 {CLAIM_RETURNING}"
                ))
                .await
                .map_err(fail)?;
            tx.query(
                &claim,
                &[
                    &self.inner.relay_id,
                    &(limit as i64),
                    &millis(lease),
                    &leader.destination.lane(),
                    &leader.event.source,
                    &batch_id,
                ],
            )
            .await
            .map_err(fail)?
        };
        let ids: Vec<i64> = members.iter().filter_map(|m| m.id.parse().ok()).collect();
        let claims: Vec<&str> = members
            .iter()
            .filter(|m| m.id.parse::<i64>().is_ok())
            .map(|m| m.claim.as_str())
            .collect();
        tx.execute(
            "UPDATE hookflow.deliveries d SET batch_id = $3
             FROM unnest($1::int8[], $2::text[]) AS m(id, claim)
             WHERE d.id = m.id AND d.claim::text = m.claim AND d.state = 'inflight'",
            &[&ids, &claims, &batch_id],
        )
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        let mut more = claimed_rows(rows);
        more.sort_by_key(|c| c.id.parse::<i64>().unwrap_or(i64::MAX));
        Ok(more)
    }

    async fn record(&self, results: Vec<(ClaimRef, Recorded)>) -> Result<usize, StoreError> {
        let (reply, wait) = oneshot::channel();
        self.inner
            .records
            .send((results, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        let n = wait.await.map_err(|_| StoreError::Closed)?;
        n
    }

    async fn next_due(&self) -> Result<Option<Duration>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                // Pending deliveries only: a lease that runs out is found by the reaper in
                // `claim`, which the worker's idle poll reaches. (The oldest leases are mostly
                // of deliveries long done, whose dead index entries a min() would wade through.)
                "SELECT (extract(epoch FROM (
                     (SELECT min(next_at) FROM hookflow.deliveries WHERE state = 'pending')
                 - now())) * 1000)::float8",
                &[],
            )
            .await
            .map_err(|e| db_error("cannot read the queue", e))?;
        let ms: Option<f64> = row.get(0);
        Ok(ms.map(|ms| Duration::from_millis(ms.max(0.0).ceil() as u64)))
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        let client = self.client().await?;
        let fail = |e: tokio_postgres::Error| db_error("cannot count the queue", e);
        let mut c = Counts::default();
        for row in client
            .query(
                // Each from its partial index: delivered rows (the event log) are not counted.
                "SELECT (SELECT count(*) FROM hookflow.deliveries WHERE state = 'pending'),
                        (SELECT count(*) FROM hookflow.deliveries WHERE state = 'inflight'),
                        (SELECT count(*) FROM hookflow.deliveries WHERE state = 'dead')",
                &[],
            )
            .await
            .map_err(fail)?
        {
            let n = |i: usize| row.get::<_, i64>(i).max(0) as u64;
            c.pending = n(0);
            c.inflight = n(1);
            c.dead = n(2);
        }
        c.oldest_pending = client
            .query_opt(
                "SELECT (extract(epoch FROM e.received_at) * 1000)::int8
                 FROM hookflow.deliveries d JOIN hookflow.events e ON e.id = d.event_id
                 WHERE d.state = 'pending' ORDER BY d.next_at, d.id LIMIT 1",
                &[],
            )
            .await
            .map_err(fail)?
            .map(|r| r.get(0));
        Ok(c)
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT d.id, e.id, d.destination, e.source, e.event_type, d.attempts,
                        coalesce(d.last_error, ''),
                        (extract(epoch FROM e.received_at) * 1000)::int8
                 FROM hookflow.deliveries d JOIN hookflow.events e ON e.id = d.event_id
                 WHERE d.state = 'dead' ORDER BY e.received_at, e.id, d.id LIMIT $1",
                &[&(limit as i64)],
            )
            .await
            .map_err(|e| db_error("cannot read dead letters", e))?;
        Ok(rows
            .into_iter()
            .map(|r| DeadLetter {
                id: r.get::<_, i64>(0).to_string(),
                event_id: r.get(1),
                destination: r.get(2),
                source: r.get(3),
                event_type: r.get(4),
                attempts: r.get::<_, i32>(5).max(0) as u32,
                error: r.get(6),
                received_at: r.get(7),
            })
            .collect())
    }

    async fn replay_dead(&self, ids: Vec<String>) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let (deliveries, events) = split_replay_ids(&ids);
        client
            .execute(
                "UPDATE hookflow.deliveries SET state = 'pending', attempts = 0, next_at = now(),
                     claim = NULL, owner = NULL, updated_at = now(), chain = chain + 1
                 WHERE state = 'dead'
                   AND ($3 OR id = ANY($1) OR event_id = ANY($2))",
                &[&deliveries, &events, &ids.is_empty()],
            )
            .await
            .map_err(|e| db_error("cannot replay dead letters", e))
    }

    async fn purge_dead(&self, older_than: Duration) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "WITH letters AS (
                     DELETE FROM hookflow.deliveries d USING hookflow.events e
                     WHERE d.state = 'dead' AND e.id = d.event_id
                       AND e.received_at <= now() - $1 * interval '1 millisecond'
                     RETURNING d.id, d.event_id
                 ), tries AS (
                     DELETE FROM hookflow.attempts a WHERE a.delivery_id IN (SELECT id FROM letters)
                 ), gone AS (
                     DELETE FROM hookflow.events e
                     WHERE e.id IN (SELECT event_id FROM letters)
                       AND NOT EXISTS (SELECT 1 FROM hookflow.deliveries d
                                       WHERE d.event_id = e.id
                                         AND d.id NOT IN (SELECT id FROM letters))
                 )
                 SELECT count(*) FROM letters",
                &[&millis(older_than)],
            )
            .await
            .map_err(|e| db_error("cannot purge dead letters", e))?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    async fn ping(&self) -> Result<Room, StoreError> {
        let client = self.client().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| db_error("the database does not answer", e))?;
        // The database's size is its operator's to manage; the relay sets no cap of its own.
        Ok(Room::default())
    }

    async fn keep_body(
        &self,
        id: String,
        bytes: Vec<u8>,
        keep_until: i64,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO hookflow.bodies (id, bytes, keep_until)
                 VALUES ($1, $2, to_timestamp($3::float8 / 1000))
                 ON CONFLICT (id) DO UPDATE
                     SET keep_until = greatest(hookflow.bodies.keep_until, excluded.keep_until)",
                &[&id, &bytes, &(keep_until as f64)],
            )
            .await
            .map_err(|e| db_error("cannot keep a body", e))?;
        Ok(())
    }

    async fn body(&self, id: String) -> Result<Option<Vec<u8>>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT bytes FROM hookflow.bodies WHERE id = $1 AND keep_until > now()",
                &[&id],
            )
            .await
            .map_err(|e| db_error("cannot read a body", e))?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn list_events(
        &self,
        filter: EventFilter,
        limit: usize,
    ) -> Result<Vec<EventSummary>, StoreError> {
        let client = self.client().await?;
        let fail = |e: tokio_postgres::Error| db_error("cannot list events", e);
        let limit = limit.clamp(1, MAX_PAGE) as i64;
        let f = super::filter_sql(&filter, "e.id", |n| format!("${n}"), "strpos");
        let mut conds = f.events.clone();
        if !f.deliveries.is_empty() {
            conds.push(format!(
                "EXISTS (SELECT 1 FROM hookflow.deliveries d WHERE d.event_id = e.id AND {})",
                f.deliveries.join(" AND ")
            ));
        }
        let filters = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        let limit_at = format!("${}", f.params.len() + 1);
        let sql = format!(
            "SELECT e.id, (extract(epoch FROM e.received_at) * 1000)::int8, e.source,
                    e.event_type, coalesce(e.method, ''), coalesce(e.path, ''), e.delivery_key
             FROM hookflow.events e {filters} ORDER BY e.id DESC LIMIT {limit_at}"
        );
        let mut params: Vec<&(dyn ToSql + Sync)> =
            f.params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        params.push(&limit);
        let rows = client.query(&sql, &params).await.map_err(fail)?;
        let mut out: Vec<EventSummary> = rows
            .iter()
            .map(|r| EventSummary {
                id: r.get(0),
                received_at: r.get(1),
                source: r.get(2),
                event_type: r.get(3),
                method: r.get(4),
                path: r.get(5),
                delivery_key: r.get(6),
                deliveries: Vec::new(),
            })
            .collect();
        let ids: Vec<&str> = out.iter().map(|e| e.id.as_str()).collect();
        let mut deliveries = deliveries_of(&client, &ids).await?;
        for e in &mut out {
            e.deliveries = deliveries.remove(&e.id).unwrap_or_default();
        }
        Ok(out)
    }

    async fn logged_event(&self, id: String) -> Result<Option<LoggedEvent>, StoreError> {
        let client = self.client().await?;
        let fail = |e: tokio_postgres::Error| db_error("cannot read an event", e);
        let Some(row) = client
            .query_opt(
                "SELECT id, (extract(epoch FROM received_at) * 1000)::int8, source, event_type,
                        payload, payload_kind, method, path, headers, delivery_key, body_pruned
                 FROM hookflow.events WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(fail)?
        else {
            return Ok(None);
        };
        let event = event_at(&row, 0);
        let delivery_key: Option<String> = row.get(9);
        let body_pruned: bool = row.get(10);
        let mut deliveries = deliveries_of(&client, &[id.as_str()])
            .await?
            .remove(&id)
            .unwrap_or_default();
        for r in client
            .query(
                "SELECT delivery_id, chain, (extract(epoch FROM at) * 1000)::int8, took_ms,
                        status, outcome, message, relay, batch_id
                 FROM hookflow.attempts WHERE event_id = $1 ORDER BY id",
                &[&id],
            )
            .await
            .map_err(fail)?
        {
            let delivery = r.get::<_, i64>(0).to_string();
            if let Some(d) = deliveries.iter_mut().find(|d| d.id == delivery) {
                d.tries.push(LoggedAttempt {
                    chain: r.get::<_, i32>(1).max(0) as u32,
                    at: r.get(2),
                    took_ms: r.get::<_, Option<i32>>(3).map(|t| t.max(0) as u32),
                    status: r
                        .get::<_, Option<i32>>(4)
                        .and_then(|s| u16::try_from(s).ok()),
                    outcome: r.get(5),
                    message: r.get(6),
                    relay: r.get(7),
                    batch_id: r.get(8),
                });
            }
        }
        Ok(Some(super::logged(
            event,
            delivery_key,
            body_pruned,
            deliveries,
        )))
    }

    async fn replay(
        &self,
        ids: Vec<String>,
        filter: EventFilter,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let listed: Vec<String> = if ids.is_empty() {
            self.list_events(filter, limit)
                .await?
                .into_iter()
                .map(|e| e.id)
                .collect()
        } else {
            Vec::new()
        };
        let (deliveries, mut events) = split_replay_ids(&ids);
        events.extend(listed);
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE hookflow.deliveries SET state = 'pending', attempts = 0, next_at = now(),
                     claim = NULL, owner = NULL, updated_at = now(), chain = chain + 1,
                     deferred_for = NULL
                 WHERE state IN ('delivered', 'dead')
                   AND (id = ANY($1) OR event_id = ANY($2))
                   AND NOT EXISTS (SELECT 1 FROM hookflow.events e
                                   WHERE e.id = hookflow.deliveries.event_id AND e.body_pruned)",
                &[&deliveries, &events],
            )
            .await
            .map_err(|e| db_error("cannot replay events", e))?;
        if n > 0 {
            client
                .execute("SELECT pg_notify($1, '')", &[&CHANNEL])
                .await
                .map_err(|e| db_error("cannot announce replayed events", e))?;
        }
        Ok(n)
    }

    async fn prune_events(
        &self,
        part: LogPart,
        older_than: Duration,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let before = ulid_floor(
            chrono::Utc::now().timestamp_millis()
                - older_than.as_millis().min(i64::MAX as u128) as i64,
        );
        if part == LogPart::Bodies {
            // Through the partial index of events that still have their body.
            let n = client
                .execute(
                    "UPDATE hookflow.events SET payload = ''::bytea, body_bytes = 0,
                         body_pruned = true
                     WHERE id IN (SELECT e.id FROM hookflow.events e
                                  WHERE NOT e.body_pruned AND e.id < $1
                                    AND NOT EXISTS (SELECT 1 FROM hookflow.deliveries d
                                                    WHERE d.event_id = e.id
                                                      AND d.state <> 'delivered')
                                  ORDER BY e.id LIMIT $2 FOR UPDATE SKIP LOCKED)",
                    &[&before, &(limit as i64)],
                )
                .await
                .map_err(|e| db_error("cannot prune the event log's bodies", e))?;
            return Ok(n);
        }
        let row = client
            .query_one(
                "WITH old AS (
                     SELECT e.id FROM hookflow.events e
                     WHERE e.id < $1
                       AND NOT EXISTS (SELECT 1 FROM hookflow.deliveries d
                                       WHERE d.event_id = e.id AND d.state <> 'delivered')
                     ORDER BY e.id LIMIT $2 FOR UPDATE SKIP LOCKED
                 ), tries AS (
                     DELETE FROM hookflow.attempts a USING old WHERE a.event_id = old.id
                 ), deliveries AS (
                     DELETE FROM hookflow.deliveries d USING old WHERE d.event_id = old.id
                 ), gone AS (
                     DELETE FROM hookflow.events e USING old WHERE e.id = old.id RETURNING e.id
                 )
                 SELECT count(*) FROM gone",
                &[&before, &(limit as i64)],
            )
            .await
            .map_err(|e| db_error("cannot prune the event log", e))?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    async fn prune_bodies(&self, limit: usize) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let n = client
            .execute(
                // Past their time; or kept for an event whose every delivery is dead (no run
                // will fetch it, and a replay keeps it again).
                "DELETE FROM hookflow.bodies WHERE id IN
                     (SELECT b.id FROM hookflow.bodies b
                      WHERE b.keep_until <= now()
                         OR (EXISTS (SELECT 1 FROM hookflow.deliveries d
                                     WHERE d.event_id = substr(b.id, 1, 26))
                             AND NOT EXISTS (SELECT 1 FROM hookflow.deliveries d
                                             WHERE d.event_id = substr(b.id, 1, 26)
                                               AND d.state <> 'dead'))
                      ORDER BY b.keep_until LIMIT $1 FOR UPDATE SKIP LOCKED)",
                &[&(limit as i64)],
            )
            .await
            .map_err(|e| db_error("cannot prune bodies", e))?;
        Ok(n)
    }
}

/// A claim token as the database writes it (a UUID); anything else matches no claim.
fn uuid_text(s: &str) -> Result<&str, ()> {
    let ok = s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| {
            matches!(i, 8 | 13 | 18 | 23) == (b == b'-') && (b == b'-' || b.is_ascii_hexdigit())
        });
    if ok {
        Ok(s)
    } else {
        Err(())
    }
}

#[cfg(any(test, feature = "test-support"))]
pub mod scratch {
    //! Throwaway databases for tests and benchmarks: each made fresh on a server and dropped
    //! when done, so runs never see each other's rows. Compiled for the crate's tests and, with
    //! the `test-support` feature, for other crates' tests and benchmarks; never in a release
    //! build.
    use super::PgLocation;

    /// A database made for one test or benchmark run; dropped (with any sessions) on drop.
    pub struct ScratchDb {
        /// Where it is.
        pub location: PgLocation,
        /// Its URL, password included (for child processes).
        pub url: String,
        admin: String,
        /// Its name.
        pub name: String,
    }

    impl Drop for ScratchDb {
        fn drop(&mut self) {
            let admin = self.admin.clone();
            let name = self.name.clone();
            // A runtime of its own: the caller's may be shutting down.
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(async {
                        if let Ok((client, conn)) =
                            tokio_postgres::connect(&admin, tokio_postgres::NoTls).await
                        {
                            tokio::spawn(conn);
                            let _ = client
                                .batch_execute(&format!(
                                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                                ))
                                .await;
                        }
                    });
                }
            })
            .join();
        }
    }

    /// The server tests use: `HOOKFLOW_TEST_POSTGRES`, else the local one.
    pub fn server_url() -> String {
        std::env::var("HOOKFLOW_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", super::redact(url)))?;
        tokio::spawn(conn);
        Ok(client)
    }

    impl ScratchDb {
        /// A fresh database on the server at `admin_url` (a user that may create databases).
        pub async fn create(admin_url: &str) -> Result<ScratchDb, String> {
            let (client, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
                .await
                .map_err(|e| {
                    format!("PostgreSQL at {} does not answer ({e}); start it or set HOOKFLOW_TEST_POSTGRES", super::redact(admin_url))
                })?;
            tokio::spawn(conn);
            let name = format!(
                "hookflow_scratch_{}",
                ulid::Ulid::generate().to_string().to_lowercase()
            );
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .map_err(|e| format!("cannot create a database: {e}"))?;
            let mut url = url::Url::parse(admin_url).map_err(|e| e.to_string())?;
            url.set_path(&format!("/{name}"));
            Ok(ScratchDb {
                location: PgLocation::parse(url.as_str())?,
                url: url.to_string(),
                admin: admin_url.to_string(),
                name,
            })
        }

        /// A session on this database (tests' servers are local: no TLS).
        pub async fn client(&self) -> Result<tokio_postgres::Client, String> {
            connect(&self.url).await
        }

        /// A session on the server's administrative database (the one that made this one).
        pub async fn admin_client(&self) -> Result<tokio_postgres::Client, String> {
            connect(&self.admin).await
        }

        /// For a test: a fresh database on [`server_url`], or `None` when `scripts/test` found
        /// no server outside CI and said it skips these tests (`HOOKFLOW_SKIP_POSTGRES=1`).
        /// Panics when the server does not answer otherwise: CI never skips.
        pub async fn for_tests() -> Option<ScratchDb> {
            if std::env::var("HOOKFLOW_SKIP_POSTGRES").as_deref() == Ok("1")
                && std::env::var("CI").as_deref() != Ok("true")
            {
                eprintln!("skipped: no PostgreSQL server (see scripts/test)");
                return None;
            }
            match ScratchDb::create(&server_url()).await {
                Ok(db) => Some(db),
                Err(e) => panic!("{e}"),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::contract;
    use super::*;

    use super::scratch::{server_url, ScratchDb};

    async fn fresh_db() -> Option<ScratchDb> {
        ScratchDb::for_tests().await
    }

    /// A store on a fresh database (kept while the returned guard lives).
    async fn fresh_store() -> Option<(ScratchDb, PgStore)> {
        let db = fresh_db().await?;
        let store = PgStore::open(&db.location, true).await.expect("opens");
        Some((db, store))
    }

    #[tokio::test]
    async fn contract_lifecycle() {
        if let Some((_db, store)) = fresh_store().await {
            contract::lifecycle(&store).await;
        }
    }

    #[tokio::test]
    async fn rate_limit_lanes_book_slots_and_full_ones_are_forgotten() {
        let Some((db, store)) = fresh_store().await else {
            return;
        };
        // 60 a minute: a burst of 60, then one a second, booked in turn.
        for _ in 0..60 {
            assert_eq!(
                store.take_slot("octo/a x", 60, true).await.expect("slot"),
                Ok(())
            );
        }
        // (The burst itself took time, during which the bucket refilled a little: the first
        // slot is within a second, the next ones a second apart.)
        let waits: Vec<f64> = booked_waits(&store, "octo/a x", 3)
            .await
            .iter()
            .map(Duration::as_secs_f64)
            .collect();
        assert!(waits[0] > 0.0 && waits[0] <= 1.05, "{waits:?}");
        for pair in waits.windows(2) {
            assert!((pair[1] - pair[0] - 1.0).abs() < 0.25, "{waits:?}");
        }
        // A batching lane books nothing: its wait is the next token's, whatever is booked.
        for _ in 0..3 {
            let wait = store
                .take_slot("octo/a x", 60, false)
                .await
                .expect("slot")
                .expect_err("no token");
            assert!(wait <= Duration::from_millis(1050), "{wait:?}");
        }
        let after = booked_waits(&store, "octo/a x", 1).await[0].as_secs_f64();
        assert!(
            (after - waits[2] - 1.0).abs() < 0.25,
            "waits that book nothing push no slot back: {after} after {waits:?}"
        );
        assert_eq!(
            store.take_slot("octo/b x", 60, true).await.expect("slot"),
            Ok(())
        );
        // A stranger's made-up lanes do not stay: idle and full for a minute, they go; a lane
        // with slots booked ahead stays.
        let c = db.client().await.expect("session");
        c.batch_execute(
            "UPDATE hookflow.lanes SET at = now() - interval '2 minutes';
             UPDATE hookflow.lanes SET last_slot = now() + interval '1 minute' WHERE lane = 'octo/a x'",
        )
        .await
        .expect("age the lanes");
        let client = store.client().await.expect("pool");
        assert_eq!(PgStore::prune_lanes(&client).await.expect("prune"), 1);
        let left: Vec<String> = c
            .query("SELECT lane FROM hookflow.lanes", &[])
            .await
            .expect("query")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(left, ["octo/a x"]);
    }

    async fn booked_waits(store: &PgStore, lane: &str, n: usize) -> Vec<Duration> {
        let mut waits = Vec::new();
        for _ in 0..n {
            waits.push(
                store
                    .take_slot(lane, 60, true)
                    .await
                    .expect("slot")
                    .expect_err("booked"),
            );
        }
        waits
    }

    #[tokio::test]
    async fn contract_fan_out() {
        if let Some((_db, store)) = fresh_store().await {
            contract::fan_out(&store).await;
        }
    }

    #[tokio::test]
    async fn contract_lanes() {
        if let Some((_db, store)) = fresh_store().await {
            contract::lanes(&store).await;
        }
    }

    #[tokio::test]
    async fn contract_dedupe() {
        if let Some((_db, store)) = fresh_store().await {
            contract::dedupe(&store).await;
        }
    }

    #[tokio::test]
    async fn contract_event_log() {
        if let Some((_db, store)) = fresh_store().await {
            contract::event_log(&store).await;
        }
    }

    #[tokio::test]
    async fn contract_bodies() {
        if let Some((_db, store)) = fresh_store().await {
            contract::bodies(&store).await;
        }
    }

    #[tokio::test]
    async fn contract_concurrent_inserts() {
        if let Some((_db, store)) = fresh_store().await {
            contract::concurrent_inserts(&store).await;
        }
    }

    #[tokio::test]
    async fn migrations_are_versioned_and_a_newer_database_refused() {
        let Some(db) = fresh_db().await else {
            return;
        };
        let err = PgStore::open(&db.location, false)
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("hookflow relay migrate"), "{err}");
        assert_eq!(
            PgStore::schema(&db.location).await.expect("schema").version,
            0
        );
        assert_eq!(
            PgStore::migrate(&db.location).await.expect("migrates"),
            (0, SCHEMA_VERSION)
        );
        assert_eq!(
            PgStore::migrate(&db.location).await.expect("again"),
            (SCHEMA_VERSION, SCHEMA_VERSION)
        );
        drop(
            PgStore::open(&db.location, false)
                .await
                .expect("current schema"),
        );
        let store = PgStore::open(&db.location, true).await.expect("opens");
        store
            .client()
            .await
            .expect("client")
            .batch_execute("INSERT INTO hookflow.schema_migrations (version) VALUES (99)")
            .await
            .expect("bump");
        let err = PgStore::open(&db.location, true)
            .await
            .expect_err("refused");
        assert!(
            err.to_string().contains("newer hookflow (schema 99"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn relays_starting_together_migrate_once() {
        let Some(db) = fresh_db().await else {
            return;
        };
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let l = db.location.clone();
                tokio::spawn(async move { PgStore::open(&l, true).await.map(|_| ()) })
            })
            .collect();
        for o in opens {
            o.await.expect("task").expect("opens");
        }
        assert_eq!(
            PgStore::schema(&db.location).await.expect("schema").version,
            SCHEMA_VERSION
        );
    }

    #[tokio::test]
    async fn two_relays_never_claim_the_same_delivery() {
        let Some(db) = fresh_db().await else {
            return;
        };
        let a = PgStore::open(&db.location, true).await.expect("opens");
        let b = PgStore::open(&db.location, true).await.expect("opens");
        for i in 0..400 {
            a.insert(contract::event(&format!("e{i:04}")))
                .await
                .expect("insert");
        }
        let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
        loop {
            let (x, y) = tokio::join!(
                a.claim(7, Duration::from_secs(60)),
                b.claim(7, Duration::from_secs(60))
            );
            let (x, y) = (x.expect("claim"), y.expect("claim"));
            if x.is_empty() && y.is_empty() {
                break;
            }
            seen_a.extend(x.into_iter().map(|c| c.event.id.clone()));
            seen_b.extend(y.into_iter().map(|c| c.event.id.clone()));
        }
        let mut all: Vec<String> = seen_a.iter().chain(&seen_b).cloned().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 400, "every delivery claimed");
        assert_eq!(seen_a.len() + seen_b.len(), 400, "and none twice");
        assert!(
            !seen_a.is_empty() && !seen_b.is_empty(),
            "both relays worked"
        );
    }

    #[tokio::test]
    async fn a_new_event_wakes_every_listening_relay() {
        let Some(db) = fresh_db().await else {
            return;
        };
        let a = PgStore::open(&db.location, true).await.expect("opens");
        let b = PgStore::open(&db.location, true).await.expect("opens");
        let wake = Arc::new(Notify::new());
        b.notify_new_events(wake.clone());
        // Give the LISTEN session a moment to start, then insert on the other relay.
        tokio::time::sleep(Duration::from_millis(300)).await;
        a.insert(contract::event("x")).await.expect("insert");
        tokio::time::timeout(Duration::from_secs(5), wake.notified())
            .await
            .expect("woken by NOTIFY");
    }

    /// The URL of `db` with `query` added and its host replaced.
    fn variant(db: &ScratchDb, host: &str, query: &str) -> PgLocation {
        let mut url = url::Url::parse(&server_url()).expect("URL");
        url.set_path(&format!("/{}", db.name));
        url.set_host(Some(host)).expect("host");
        let text = format!(
            "{url}{}{query}",
            if url.query().is_some() { "&" } else { "?" }
        );
        PgLocation::parse(&text).expect("parses")
    }

    #[tokio::test]
    async fn tls_modes_mean_what_they_mean_to_libpq() {
        let Some(db) = fresh_db().await else {
            return;
        };
        let (client, conn) = tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
            .await
            .expect("connects");
        tokio::spawn(conn);
        let ssl: String = client.query_one("SHOW ssl", &[]).await.expect("ssl").get(0);
        let host = url::Url::parse(&server_url())
            .expect("URL")
            .host_str()
            .unwrap_or("127.0.0.1")
            .to_string();
        let require = variant(&db, &host, "sslmode=require");
        if ssl != "on" {
            // A server without TLS: `require` refuses to go on in clear.
            let err = PgStore::open(&require, true).await.expect_err("refused");
            assert!(err.to_string().contains("PostgreSQL"), "{err}");
            return;
        }
        let store = PgStore::open(&require, true)
            .await
            .expect("require: TLS, unchecked");
        let encrypted: bool = store
            .client()
            .await
            .expect("client")
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .expect("pg_stat_ssl")
            .get(0);
        assert!(encrypted, "the session is encrypted");
        // verify-full against the web's roots: a self-signed server certificate is refused.
        let err = PgStore::open(&variant(&db, &host, "sslmode=verify-full"), true)
            .await
            .expect_err("an unknown issuer is refused");
        assert!(err.to_string().contains("cannot connect"), "{err}");
        // With the server's own certificate as root (sslrootcert), verify-ca accepts it.
        let cert: String = client
            .query_one("SHOW ssl_cert_file", &[])
            .await
            .expect("cert file")
            .get(0);
        if std::path::Path::new(&cert).is_file() {
            let with_root = format!("sslmode=verify-ca&sslrootcert={cert}");
            PgStore::open(&variant(&db, &host, &with_root), true)
                .await
                .expect("verify-ca with the server's certificate as root");
        }
    }

    #[test]
    fn urls_are_parsed_and_passwords_never_shown() {
        let l = PgLocation::parse(
            "postgres://app:s3cret@db.example.com:6543/hooks?sslmode=verify-full",
        )
        .expect("parses");
        assert_eq!(l.tls, TlsMode::VerifyFull);
        assert_eq!(l.database(), "hooks");
        assert!(!l.to_string().contains("s3cret"), "{l}");
        assert!(!format!("{l:?}").contains("s3cret"));
        let err = PgLocation::parse("postgres://app:s3cret@db/hooks?sslmode=sometimes")
            .expect_err("refused");
        assert!(
            err.contains("sslmode=sometimes") && !err.contains("s3cret"),
            "{err}"
        );
        let err = PgLocation::parse("mysql://db/hooks").expect_err("refused");
        assert!(err.contains("postgres://"), "{err}");
        assert_eq!(
            PgLocation::parse("postgresql://u@h/d?sslmode=disable")
                .expect("parses")
                .tls,
            TlsMode::Disable
        );
        assert!(uuid_text("not-a-uuid").is_err());
        assert!(uuid_text("0b9a5f3e-2c1d-4e5f-8a7b-6c5d4e3f2a1b").is_ok());
    }
}
