//! Starting the real koldly server for a test, on SQLite (a temp file) or on
//! PostgreSQL (a fresh database per test, dropped afterwards), and talking to it.
#![allow(dead_code)]

#[path = "../../../../tests/common/mod.rs"]
pub mod common;
pub mod fake_anthropic;
pub mod fake_mailgun;
pub mod fake_stripe;
pub mod keyed_load;
pub mod openapi;
pub mod process;
pub mod schema_example;

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use bytes::Bytes;
use http_body_util::Full;
use koldly::{AppHandles, Config, clock::ManualClock, config::Argon2Params};
use sqlx::{Connection, Executor};
use tokio::sync::oneshot;

pub use self::common::{Reply, get, send, send_json};

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an async scenario `fn(Backend)` as two tests: one on SQLite and one on
/// PostgreSQL (skipped with a printed reason when DATABASE_URL is unset).
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if $crate::support::common::service_url("DATABASE_URL").is_some() {
                        super::$name($crate::support::Backend::Postgres).await;
                    }
                }
            )*
        }
    };
}

/// A database made for one test and removed when it is dropped.
pub enum TestDb {
    Sqlite(PathBuf),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    pub async fn create(backend: Backend) -> (Self, String) {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("koldly-test-{unique}.db"));
                let url = format!("sqlite:{}", path.display());
                (Self::Sqlite(path), url)
            }
            Backend::Postgres => {
                let admin_url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
                let name = format!("koldly_t_{unique}");
                sqlx::any::install_default_drivers();
                let mut admin = sqlx::AnyConnection::connect(&admin_url)
                    .await
                    .expect("admin connection");
                // The name is this test's own UUID, never input.
                admin
                    .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .expect("create test database");
                admin.close().await.ok();
                let mut url = url::Url::parse(&admin_url).expect("DATABASE_URL is a URL");
                url.set_path(&format!("/{name}"));
                (Self::Postgres { admin_url, name }, url.to_string())
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match self {
            Self::Sqlite(path) => {
                // `-jobs`: the job engine's (apalis's) file beside koldly's.
                for suffix in ["", "-wal", "-shm", "-jobs", "-jobs-wal", "-jobs-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Self::Postgres { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // A thread of its own: Drop may run inside (or after) the test's runtime.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        if let Ok(mut admin) = sqlx::AnyConnection::connect(&admin_url).await {
                            let _ = admin
                                .execute(sqlx::AssertSqlSafe(format!(
                                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                                )))
                                .await;
                            let _ = admin.close().await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub handles: AppHandles,
    pub clock: Arc<ManualClock>,
    /// The server's OpenAPI document: every reply of [`TestServer::get`],
    /// [`TestServer::post`], [`TestServer::authed`] and the product tests'
    /// client is checked against it.
    pub api: Arc<openapi::ApiSchema>,
    shutdown: Option<oneshot::Sender<()>>,
    join: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    // Last: the database goes after the server.
    _db: TestDb,
}

impl TestServer {
    /// Starts koldly with test defaults (cheap argon2, a manual clock), after
    /// `tweak` adjusts the configuration.
    pub async fn start(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let (db, url) = TestDb::create(backend).await;
        let clock = Arc::new(ManualClock::new());
        let mut config = Config::development(url);
        config.argon2 = Argon2Params::TESTING;
        config.clock = clock.clone();
        tweak(&mut config);
        let (router, handles) = koldly::build_app(config).await.expect("koldly starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let join = tokio::spawn(koldly::serve(
            listener,
            router,
            handles.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        let api = Arc::new(openapi::ApiSchema::new(
            get(addr, koldly::openapi::OPENAPI_PATH).await.json(),
        ));
        Self {
            addr,
            handles,
            clock,
            api,
            shutdown: Some(tx),
            join: Some(join),
            _db: db,
        }
    }

    /// Stops the server and starts a new one with the same configuration on
    /// the same database, as a restart of the process would.
    pub async fn restart(mut self) -> Self {
        self.signal_shutdown();
        self.wait().await;
        let config = self.handles.state.config.clone();
        let (router, handles) = koldly::build_app(config).await.expect("koldly restarts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let join = tokio::spawn(koldly::serve(
            listener,
            router,
            handles.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        self.addr = addr;
        self.handles = handles;
        self.shutdown = Some(tx);
        self.join = Some(join);
        self
    }

    /// Sends the shutdown signal and waits for `serve` to return.
    pub async fn stop(mut self) {
        self.signal_shutdown();
        self.wait().await;
    }

    /// Sends the shutdown signal.
    pub fn signal_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for `serve` to return.
    pub async fn wait(&mut self) {
        if let Some(join) = self.join.take() {
            join.await.expect("serve task").expect("serve");
        }
    }

    pub fn pool(&self) -> &sqlx::AnyPool {
        &self.handles.db().pool
    }

    pub async fn post(&self, path: &str, body: &str) -> Reply {
        let reply = send_json(self.addr, "POST", path, body).await;
        self.api.check("POST", path, &reply);
        reply
    }

    pub async fn get(&self, path: &str) -> Reply {
        let reply = get(self.addr, path).await;
        self.api.check("GET", path, &reply);
        reply
    }

    /// A request with `Authorization: Bearer {token}`.
    pub async fn authed(&self, method: &str, path: &str, token: &str, body: &str) -> Reply {
        let reply = send(
            ::http::Request::builder()
                .method(method)
                .uri(format!("http://{}{path}", self.addr))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
                .unwrap(),
        )
        .await;
        self.api.check(method, path, &reply);
        reply
    }

    /// Signs up and returns (token, user id).
    pub async fn signup(&self, email: &str, password: &str) -> (String, String) {
        let body = serde_json::json!({ "email": email, "password": password, "name": "Test User" });
        let res = self.post("/api/auth/signup", &body.to_string()).await;
        assert_eq!(
            res.status,
            201,
            "signup: {}",
            String::from_utf8_lossy(&res.body)
        );
        let json = res.json();
        (
            json["token"].as_str().unwrap().to_owned(),
            json["user"]["id"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn login(&self, email: &str, password: &str) -> Reply {
        let body = serde_json::json!({ "email": email, "password": password });
        self.post("/api/auth/login", &body.to_string()).await
    }

    /// Waits until the work requests left for after their answer is done.
    pub async fn settle(&self) {
        assert!(
            self.handles
                .state
                .background
                .wait_idle(std::time::Duration::from_secs(10))
                .await,
            "background work finished"
        );
    }

    /// The token in the newest outbox message of `kind` to `to`, and how many
    /// such messages there are (after background work settled).
    pub async fn mailed_token(&self, to: &str, kind: &str) -> (String, usize) {
        self.settle().await;
        let messages = koldly::db::outbox::for_recipient(self.pool(), to)
            .await
            .unwrap();
        let of_kind: Vec<_> = messages.iter().filter(|m| m.kind == kind).collect();
        let newest = of_kind
            .first()
            .unwrap_or_else(|| panic!("no {kind} mail to {to}"));
        let token = newest
            .body_text
            .split("token=")
            .nth(1)
            .expect("a link with a token")
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned();
        (token, of_kind.len())
    }

    /// Writes the queued audit events.
    pub async fn flush_audit(&self) {
        self.handles.auditor.flush().await;
    }

    /// The audit events recorded so far as `action/outcome`, oldest first.
    pub async fn audit_events(&self) -> Vec<String> {
        self.flush_audit().await;
        let mut events: Vec<String> = koldly::db::audit_log::recent(self.pool(), 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| format!("{}/{}", r.action, r.outcome))
            .collect();
        events.reverse();
        events
    }
}

/// POSTs `body` as JSON with its Content-Length and `Expect: 100-continue`
/// over a raw connection, the way curl sends a large body: the body goes out
/// only if the server asks for it. Returns the status of the final answer,
/// the raw response, and whether the server asked for the body.
///
/// A server that refuses a body it has not read closes the connection; a
/// client still writing megabytes then fails with a broken pipe before it
/// reads the answer. Waiting for `100 Continue` makes that exchange exact.
pub async fn post_expecting_continue(
    addr: SocketAddr,
    path: &str,
    body: &[u8],
) -> (u16, String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.expect("reading the answer");
        assert!(n > 0, "connection closed before a response head");
        response.extend_from_slice(&buf[..n]);
    }
    let asked_for_body = response.starts_with(b"HTTP/1.1 100");
    if asked_for_body {
        let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        response.drain(..end);
        stream.write_all(body).await.expect("sending the body");
    }
    stream
        .read_to_end(&mut response)
        .await
        .expect("reading the answer");
    let (status, text) = status_and_text(&response);
    (status, text, asked_for_body)
}

/// POSTs `body` as JSON with `Transfer-Encoding: chunked` (no Content-Length)
/// over a raw connection; returns the status and the raw response head.
pub async fn post_chunked(addr: SocketAddr, path: &str, body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(1000) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before reading everything.
    let _ = stream.write_all(&req).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let (status, text) = status_and_text(&response);
    (status, text)
}

/// The status code of a raw HTTP/1.1 response, and the response as text.
fn status_and_text(response: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, text)
}
