//! The database: one pool (SQLite or PostgreSQL through `sqlx::Any`), embedded
//! migrations for both, and one repository module per aggregate. SQL lives here
//! and nowhere else; handlers call these functions.
//!
//! Every query is written once in the dialect both engines accept (`$1`
//! placeholders, `RETURNING`, `lower()`), with portable types: ids are text
//! UUIDs, timestamps `i64` unix seconds, flags `0`/`1` integers.

pub mod admin;
pub mod ai_usage;
pub mod analytics;
pub mod answers;
pub mod audit_log;
pub mod billing;
pub mod campaigns;
pub mod dashboard;
pub mod emails;
pub mod icp_templates;
pub mod inbox;
pub(crate) mod job_queue;
pub mod jobs;
pub mod keyed_creates;
pub mod onboarding;
pub mod outbox;
pub mod prospects;
pub mod replies;
pub mod senders;
pub mod sending;
pub mod sent_mail;
pub mod sequences;
pub mod server_secrets;
pub mod suppressions;
pub mod tokens;
pub mod usage;
pub mod users;
pub mod webhook_tokens;

use std::time::Duration;

use sqlx::{
    AnyPool, Executor,
    any::{AnyPoolOptions, install_default_drivers},
    migrate::Migrator,
};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// The database engine behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// The limits of koldly's pool (and the job engine's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// How long a caller waits for a connection (the pool's ping of an idle
    /// one and any connect included) before `PoolTimedOut`, answered 503 with
    /// `Retry-After`. Default 10 s, under every route timeout (12 s and
    /// more), so a database that stopped answering is a 503 before the
    /// request's deadline.
    ///
    /// On PostgreSQL it also bounds the check of a connection handed back to
    /// the pool: one that does not answer its ping within it is dropped, so a
    /// query cancelled while the network swallowed its bytes cannot hold its
    /// connection's slot for good.
    pub acquire_timeout: Duration,
    /// Connections kept open (default 2).
    pub min_connections: u32,
    /// The most connections (default 10).
    pub max_connections: u32,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            acquire_timeout: Duration::from_secs(10),
            min_connections: 2,
            max_connections: 10,
        }
    }
}

/// The connection pool and its engine.
#[derive(Debug, Clone)]
pub struct Db {
    /// The pool every repository function takes.
    pub pool: AnyPool,
    /// Which engine it talks to.
    pub backend: Backend,
    /// The job engine's (apalis's) own pool: its storage crates take a typed
    /// pool, not `sqlx::Any`.
    pub(crate) queue: QueuePool,
}

/// apalis's pool: on PostgreSQL the same database (apalis keeps its tables
/// and migration history in the `apalis` schema); on SQLite a file of its own
/// beside koldly's (`<file>-jobs`), because apalis-sqlite's `Jobs` table and
/// migration history would collide with koldly's `jobs` and `_sqlx_migrations`
/// (SQLite table names ignore case).
#[derive(Debug, Clone)]
pub(crate) enum QueuePool {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl QueuePool {
    /// Connects and applies apalis's migrations.
    async fn open(
        backend: Backend,
        url: &str,
        settings: PoolSettings,
    ) -> Result<Self, sqlx::Error> {
        let to_sqlx = |e: Box<dyn std::error::Error + Send + Sync>| {
            sqlx::Error::Migrate(Box::new(sqlx::migrate::MigrateError::Source(e)))
        };
        match backend {
            Backend::Postgres => {
                let limit = settings.acquire_timeout;
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .acquire_timeout(settings.acquire_timeout)
                    .after_release(move |conn, _meta| ping_on_release(conn, limit))
                    .max_connections(5)
                    .connect(url)
                    .await?;
                apalis_postgres::PostgresStorage::setup(&pool)
                    .await
                    .map_err(|e| to_sqlx(Box::new(e)))?;
                Ok(Self::Postgres(pool))
            }
            Backend::Sqlite => {
                let url = sqlite_queue_url(url);
                let mut options = sqlx::sqlite::SqlitePoolOptions::new()
                    .acquire_timeout(settings.acquire_timeout)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute("PRAGMA busy_timeout = 5000;").await?;
                            Ok(())
                        })
                    });
                if url.contains(":memory:") {
                    // Every in-memory connection is a database of its own.
                    options = options
                        .max_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None);
                }
                let pool = options.connect(&url).await?;
                apalis_sqlite::SqliteStorage::setup(&pool)
                    .await
                    .map_err(|e| to_sqlx(Box::new(e)))?;
                Ok(Self::Sqlite(pool))
            }
        }
    }

    async fn close(&self) {
        match self {
            Self::Postgres(pool) => pool.close().await,
            Self::Sqlite(pool) => pool.close().await,
        }
    }
}

/// Checks a PostgreSQL connection handed back to the pool, within `limit`:
/// `Err` (a broken or silent connection) makes the pool drop it without a
/// goodbye, so its slot is free again.
///
/// sqlx pings every released connection itself, to flush what a cancelled
/// query left behind, but without a time limit. A query cancelled by its route
/// timeout while the network swallowed its bytes (a black hole: no reset, no
/// answer) then left a ping waiting forever, and the connection's slot with
/// it: after such an outage the pool never got its capacity back
/// (`tests/faults_db.rs`, RELIABILITY.md K1c). This ping runs first and gives
/// up at `limit`. It costs one more round trip per release on a healthy
/// connection (sqlx's own ping then finds it idle).
fn ping_on_release<C: sqlx::Connection>(
    conn: &mut C,
    limit: Duration,
) -> std::pin::Pin<Box<dyn Future<Output = Result<bool, sqlx::Error>> + Send + '_>> {
    Box::pin(async move {
        match tokio::time::timeout(limit, conn.ping()).await {
            Ok(Ok(())) => Ok(true),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "a released connection did not answer its ping",
            ))),
        }
    })
}

/// The URL of apalis's SQLite file beside koldly's `url` (`<file>-jobs`).
fn sqlite_queue_url(url: &str) -> String {
    if url.contains(":memory:") {
        return "sqlite::memory:".to_owned();
    }
    match url.split_once('?') {
        Some((path, query)) => format!("{path}-jobs?{query}"),
        None => format!("{url}-jobs?mode=rwc"),
    }
}

impl Db {
    /// Connects (creating a SQLite file if needed) and applies the migrations,
    /// with the default [`PoolSettings`].
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        Self::connect_with(url, PoolSettings::default()).await
    }

    /// Connects (creating a SQLite file if needed) and applies the migrations.
    ///
    /// Pool: as `settings` say (by default 2 to 10 connections, 10 s to acquire
    /// one). SQLite connections run
    /// with `foreign_keys=ON`, WAL and a 5 s busy timeout; PostgreSQL TLS follows
    /// the URL's `sslmode` (rustls, webpki roots).
    pub async fn connect_with(url: &str, settings: PoolSettings) -> Result<Self, sqlx::Error> {
        install_default_drivers();
        let (backend, url) = if url.starts_with("sqlite:") {
            let url = if url.contains("mode=") || url.contains(":memory:") {
                url.to_owned()
            } else if url.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(sqlx::Error::Configuration(
                "DATABASE_URL must start with sqlite: or postgres://".into(),
            ));
        };
        let mut options = AnyPoolOptions::new()
            .acquire_timeout(settings.acquire_timeout)
            .min_connections(settings.min_connections)
            .max_connections(settings.max_connections);
        if backend == Backend::Postgres {
            let limit = settings.acquire_timeout;
            options = options.after_release(move |conn, _meta| ping_on_release(conn, limit));
        }
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;",
                    )
                    .await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(&url).await?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&pool).await?;
        let queue = QueuePool::open(backend, &url, settings).await?;
        Ok(Self {
            pool,
            backend,
            queue,
        })
    }

    /// Applies the embedded migrations of this engine.
    pub async fn migrate(&self) -> Result<(), sqlx::Error> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Closes koldly's pool and the job engine's.
    pub async fn close(&self) {
        self.pool.close().await;
        self.queue.close().await;
    }

    /// Runs `SELECT 1`.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// A fresh text UUID (v7: time-ordered, so ids sort by creation).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// SQL text assembled at run time from `&'static str` fragments and numbered
/// `$n` placeholders only — never from input — for the few queries whose shape
/// depends on which optional filters are present (a list's cursor, a status
/// filter, an `IN` list's length).
///
/// sqlx 0.9 refuses a `String` as SQL unless it is asserted safe
/// ([`sqlx::AssertSqlSafe`]); this type is that assertion made checkable:
/// [`push`](Self::push) takes only `&'static str` and [`param`](Self::param)
/// writes only a number, so no value reaches the text; values are bound.
#[derive(Debug)]
pub(crate) struct StaticSql {
    text: String,
    next_param: usize,
}

impl StaticSql {
    /// Starts with `head`, whose placeholders are `$1` to `$params`.
    pub(crate) fn new(head: &'static str, params: usize) -> Self {
        Self {
            text: head.to_owned(),
            next_param: params + 1,
        }
    }

    /// Appends a constant fragment.
    pub(crate) fn push(&mut self, fragment: &'static str) -> &mut Self {
        self.text.push_str(fragment);
        self
    }

    /// Appends the next placeholder (`$n`) and returns `n`.
    pub(crate) fn param(&mut self) -> usize {
        let n = self.next_param;
        self.next_param += 1;
        self.text.push('$');
        self.text.push_str(&n.to_string());
        n
    }

    /// Appends placeholder `$n` again (a parameter used twice).
    pub(crate) fn param_again(&mut self, n: usize) -> &mut Self {
        self.text.push('$');
        self.text.push_str(&n.to_string());
        self
    }

    /// The text, for `sqlx::query`. Safe to assert: only constant fragments
    /// and placeholder numbers went into it (see the type's doc).
    pub(crate) fn finish(self) -> sqlx::AssertSqlSafe<String> {
        sqlx::AssertSqlSafe(self.text)
    }
}
