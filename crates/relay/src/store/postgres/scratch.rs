//! Throwaway databases for tests and benchmarks: each made fresh on a server and dropped
//! when done, so runs never see each other's rows. Compiled for the crate's tests and, with
//! the `test-support` feature, for other crates' tests and benchmarks; never in a release
//! build.

use super::location::redact;
use super::location::PgLocation;

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
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
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

pub(super) async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", redact(url)))?;
    tokio::spawn(conn);
    Ok(client)
}

impl ScratchDb {
    /// A fresh database on the server at `admin_url` (a user that may create databases).
    pub async fn create(admin_url: &str) -> Result<ScratchDb, String> {
        let (client, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
            .await
            .map_err(|e| {
                format!("PostgreSQL at {} does not answer ({e}); start it or set HOOKFLOW_TEST_POSTGRES", redact(admin_url))
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
