//! The real koldly binary (`CARGO_BIN_EXE_koldly`) as a child process of a
//! test: configured by its environment variables, its address read from its
//! `listening` log line, killed with SIGKILL (tokio's `Child::kill`).
//!
//! The binary in the shared target directory may be another branch's: rebuild
//! it (`cargo build -p koldly --all-features`) before running these tests.

use std::{net::SocketAddr, process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::oneshot,
};

/// The JWT secret every process of a test shares, so a session made on one
/// instance is valid on the others and after a restart.
pub const JWT_SECRET: &str = "a jwt secret of at least thirty-two bytes";

/// How long a process may take to listen: a fresh database is migrated first.
const START_LIMIT: Duration = Duration::from_secs(60);

/// The koldly binary on `database_url`, on an ephemeral loopback port, without
/// Redis (unless the caller sets `REDIS_URL`), its output discarded; killed
/// when dropped. Callers add their own variables.
pub fn command(database_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_koldly"));
    command
        .env("DATABASE_URL", database_url)
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("JWT_SECRET", JWT_SECRET)
        .env("RUST_LOG", "warn")
        .env_remove("REDIS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

/// A koldly process serving HTTP.
pub struct KoldlyProcess {
    pub addr: SocketAddr,
    child: Child,
}

impl KoldlyProcess {
    /// Starts `command` (see [`command`]) and waits until it listens.
    pub async fn start(mut command: Command) -> Self {
        command
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn,koldly=info")
            .stdout(Stdio::piped());
        let mut child = command.spawn().expect("koldly starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut lines = BufReader::new(stdout).lines();
            // Read to the end: a full pipe would block the process.
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = listening_addr(&line)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = tokio::time::timeout(START_LIMIT, rx)
            .await
            .expect("koldly listens within 60 s")
            .expect("koldly exited before it listened");
        Self { addr, child }
    }

    /// SIGKILL: no shutdown, no flush, nothing finished.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("SIGKILL");
    }
}

/// The address of koldly's JSON `listening` log line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let event: serde_json::Value = serde_json::from_str(line).ok()?;
    if event["fields"]["message"] != "listening" {
        return None;
    }
    event["fields"]["addr"].as_str()?.parse().ok()
}

/// Polls `done` every 100 ms until it holds; fails the test after 60 s.
pub async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// Whether PostgreSQL and Redis are configured (each unset one is reported,
/// or fails the test under `STEADFAST_REQUIRE_SERVICES=1`); the Redis URL.
pub fn postgres_and_redis() -> Option<String> {
    let postgres = super::common::service_url("DATABASE_URL");
    let redis = super::common::service_url("REDIS_URL");
    postgres.and(redis)
}
