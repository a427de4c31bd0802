//! apalis 1.0 against the four requirements issue 17 sets for koldly's job
//! engine, on its PostgreSQL backend (apalis-postgres 1.0.0) and, where it
//! makes sense, its SQLite backend (apalis-sqlite 1.0.0); and apalis-cron
//! 1.0.0's ticks.
//!
//! These tests drive apalis itself (its storage, its workers, its leases),
//! not koldly's `jobs` module: they record what the engine guarantees.
//! apalis times its leases with the database clock (a worker whose
//! `last_seen` is older than `heartbeat_interval × missed_heartbeats` loses its
//! tasks), so koldly's `ManualClock` cannot move it: the tests keep the lease
//! at four seconds and wait for a condition with a bounded poll.
//!
//! Every run of a probe task is a row in `probe_runs` (task number, worker,
//! `started`/`finished`), written by the handler itself, so the tests count
//! what really ran.

mod support;

use std::{str::FromStr, sync::Arc, time::Duration};

use apalis::prelude::*;
use apalis_postgres::{PgPool, PostgresStorage};
use serde::{Deserialize, Serialize};
use support::{Backend, TestDb};
use tokio::sync::Notify;

/// A probe task: number `n`; `hold` makes its handler wait for the test's
/// release (or forever in a child process).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Probe {
    n: i32,
    hold: bool,
}

/// What a probe handler is given: where to record runs, its worker's name,
/// and the release of held probes.
#[derive(Clone)]
struct Probes {
    runs: Runs,
    worker: String,
    release: Arc<Notify>,
    hold_forever: bool,
}

/// Where runs are recorded: a table in the test's own database.
#[derive(Clone)]
enum Runs {
    Postgres(PgPool),
    Sqlite(apalis_sqlite::SqlitePool),
}

impl Runs {
    async fn create(&self) {
        const SQL: &str = "CREATE TABLE probe_runs (n INTEGER NOT NULL, worker TEXT NOT NULL, event TEXT NOT NULL)";
        match self {
            Self::Postgres(pool) => sqlx::query(SQL).execute(pool).await.map(|_| ()),
            Self::Sqlite(pool) => sqlx::query(SQL).execute(pool).await.map(|_| ()),
        }
        .expect("probe_runs");
    }

    async fn record(&self, n: i32, worker: &str, event: &str) {
        const SQL: &str = "INSERT INTO probe_runs (n, worker, event) VALUES ($1, $2, $3)";
        match self {
            Self::Postgres(pool) => sqlx::query(SQL)
                .bind(n)
                .bind(worker)
                .bind(event)
                .execute(pool)
                .await
                .map(|_| ()),
            Self::Sqlite(pool) => sqlx::query(SQL)
                .bind(n)
                .bind(worker)
                .bind(event)
                .execute(pool)
                .await
                .map(|_| ()),
        }
        .expect("record a run");
    }

    /// `(n, worker)` of every `event` row, in insertion order.
    async fn events(&self, event: &str) -> Vec<(i32, String)> {
        const SQL: &str = "SELECT n, worker FROM probe_runs WHERE event = $1 ORDER BY n, worker";
        match self {
            Self::Postgres(pool) => sqlx::query_as(SQL).bind(event).fetch_all(pool).await,
            Self::Sqlite(pool) => sqlx::query_as(SQL).bind(event).fetch_all(pool).await,
        }
        .expect("read runs")
    }
}

async fn probe(task: Probe, probes: Data<Probes>) -> Result<(), BoxDynError> {
    probes.runs.record(task.n, &probes.worker, "started").await;
    println!("STARTED {} {}", task.n, probes.worker);
    if task.hold {
        if probes.hold_forever {
            std::future::pending::<()>().await;
        }
        tokio::time::timeout(Duration::from_secs(60), probes.release.notified())
            .await
            .map_err(|_| "the test never released the probe")?;
    }
    probes.runs.record(task.n, &probes.worker, "finished").await;
    Ok(())
}

/// A test database with apalis's tables and `probe_runs`.
struct Fixture {
    _db: TestDb,
    url: String,
    runs: Runs,
}

impl Fixture {
    async fn new(backend: Backend) -> Self {
        let (db, url) = TestDb::create(backend).await;
        let runs = match backend {
            Backend::Postgres => {
                let pool = PgPool::connect(&url).await.expect("PostgreSQL");
                PostgresStorage::setup(&pool).await.expect("apalis tables");
                Runs::Postgres(pool)
            }
            Backend::Sqlite => {
                let pool = apalis_sqlite::SqlitePool::connect(&format!("{url}?mode=rwc"))
                    .await
                    .expect("SQLite");
                apalis_sqlite::SqliteStorage::setup(&pool)
                    .await
                    .expect("apalis tables");
                Runs::Sqlite(pool)
            }
        };
        runs.create().await;
        Self { _db: db, url, runs }
    }

    fn probes(&self, worker: &str) -> Probes {
        Probes {
            runs: self.runs.clone(),
            worker: worker.to_owned(),
            release: Arc::new(Notify::new()),
            hold_forever: false,
        }
    }

    async fn push(&self, probes: &[Probe]) {
        match &self.runs {
            Runs::Postgres(pool) => {
                let mut storage = pg_storage(pool);
                for p in probes {
                    storage.push(p.clone()).await.expect("push");
                }
            }
            Runs::Sqlite(pool) => {
                let mut storage = sqlite_storage(pool);
                for p in probes {
                    storage.push(p.clone()).await.expect("push");
                }
            }
        }
    }
}

/// The queue every probe test uses: one task per fetch (so a worker holds
/// only what it runs), a one-second heartbeat, a lease of four missed beats
/// (one missed beat lost a running task's lease on a loaded 2-core CI machine,
/// and another worker ran it again: a lease shorter than the worst heartbeat
/// delay is not a lease).
fn pg_config() -> apalis_postgres::Config {
    apalis_postgres::Config::default()
        .queue("probes")
        .batch_size(1)
        .heartbeat_interval(Duration::from_secs(1))
        .missed_heartbeats(4)
}

fn pg_storage(pool: &PgPool) -> PostgresStorage<Probe> {
    PostgresStorage::new(pool).with_config(pg_config())
}

fn sqlite_storage(pool: &apalis_sqlite::SqlitePool) -> apalis_sqlite::SqliteStorage<Probe> {
    apalis_sqlite::SqliteStorage::new(pool).with_config(
        apalis_sqlite::Config::default()
            .queue("probes")
            .batch_size(1)
            .heartbeat_interval(Duration::from_secs(1))
            .missed_heartbeats(4),
    )
}

/// Runs a one-at-a-time probe worker named `name` until `stop` fires; returns
/// when the worker has stopped.
fn spawn_worker(
    f: &Fixture,
    probes: Probes,
    stop: Arc<Notify>,
) -> tokio::task::JoinHandle<Result<(), WorkerError>> {
    let name = probes.worker.clone();
    let signal = async move {
        stop.notified().await;
        Ok::<_, WorkerError>(())
    };
    match &f.runs {
        Runs::Postgres(pool) => {
            let worker = WorkerBuilder::new(name.as_str())
                .backend(pg_storage(pool))
                .data(probes)
                .concurrency(1)
                .build(probe);
            tokio::spawn(worker.run_until(signal))
        }
        Runs::Sqlite(pool) => {
            let worker = WorkerBuilder::new(name.as_str())
                .backend(sqlite_storage(pool))
                .data(probes)
                .concurrency(1)
                .build(probe);
            tokio::spawn(worker.run_until(signal))
        }
    }
}

/// Polls `check` every 50 ms until it holds; fails after `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn numbers(rows: &[(i32, String)]) -> Vec<i32> {
    rows.iter().map(|(n, _)| *n).collect()
}

/// Requirement 1: while worker A runs probe 0, worker B keeps fetching (it
/// runs probes 1 and 2, pushed before and after) and never runs probe 0.
async fn a_claimed_task_is_not_run_by_another_worker(backend: Backend) {
    let f = Fixture::new(backend).await;
    f.push(&[Probe { n: 0, hold: true }]).await;
    let a = f.probes("worker-a");
    let release = a.release.clone();
    let stop = Arc::new(Notify::new());
    let worker_a = spawn_worker(&f, a, stop.clone());
    let runs = f.runs.clone();
    eventually(Duration::from_secs(30), "A starts probe 0", || async {
        !runs.events("started").await.is_empty()
    })
    .await;
    let worker_b = spawn_worker(&f, f.probes("worker-b"), stop.clone());
    f.push(&[Probe { n: 1, hold: false }]).await;
    eventually(Duration::from_secs(30), "B runs probe 1", || async {
        numbers(&runs.events("finished").await) == [1]
    })
    .await;
    f.push(&[Probe { n: 2, hold: false }]).await;
    eventually(Duration::from_secs(30), "B runs probe 2", || async {
        numbers(&runs.events("finished").await) == [1, 2]
    })
    .await;
    assert_eq!(
        runs.events("started").await,
        [
            (0, "worker-a".to_owned()),
            (1, "worker-b".to_owned()),
            (2, "worker-b".to_owned())
        ],
        "probe 0 ran once, on A, while B kept working"
    );
    release.notify_one();
    eventually(Duration::from_secs(30), "A finishes probe 0", || async {
        numbers(&runs.events("finished").await) == [0, 1, 2]
    })
    .await;
    stop.notify_waiters();
    let _ = tokio::time::timeout(Duration::from_secs(30), worker_a).await;
    let _ = tokio::time::timeout(Duration::from_secs(30), worker_b).await;
    assert_eq!(runs.events("started").await.len(), 3, "no run repeated");
}

/// Requirement 4: after the stop, the worker claims nothing more (probe 1
/// stays queued) and the running probe 0 finishes before the worker ends.
async fn shutdown_stops_claiming_and_lets_running_tasks_finish(backend: Backend) {
    let f = Fixture::new(backend).await;
    f.push(&[Probe { n: 0, hold: true }]).await;
    let probes = f.probes("worker-stopping");
    let release = probes.release.clone();
    let stop = Arc::new(Notify::new());
    let worker = spawn_worker(&f, probes, stop.clone());
    let runs = f.runs.clone();
    eventually(Duration::from_secs(30), "probe 0 starts", || async {
        !runs.events("started").await.is_empty()
    })
    .await;
    stop.notify_waiters();
    f.push(&[Probe { n: 1, hold: false }]).await;
    assert!(
        !worker.is_finished(),
        "the worker waits for its running task"
    );
    release.notify_one();
    tokio::time::timeout(Duration::from_secs(30), worker)
        .await
        .expect("the worker stops once its task is done")
        .expect("worker task")
        .expect("worker");
    assert_eq!(numbers(&runs.events("finished").await), [0]);
    assert_eq!(
        numbers(&runs.events("started").await),
        [0],
        "nothing claimed after the stop"
    );
}

on_both!(
    a_claimed_task_is_not_run_by_another_worker,
    shutdown_stops_claiming_and_lets_running_tasks_finish,
);

/// The database URL and worker name of a child process.
const CHILD_DB: &str = "KOLDLY_TEST_APALIS_CHILD_DB";
const CHILD_WORKER: &str = "KOLDLY_TEST_APALIS_CHILD_WORKER";

/// Starts this test binary's `child_apalis_worker` as a separate process
/// running a worker named `worker` on `url`.
fn spawn_child(url: &str, worker: &str) -> tokio::process::Child {
    tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_apalis_worker", "--nocapture"])
        .env(CHILD_DB, url)
        .env(CHILD_WORKER, worker)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the child process starts")
}

/// Not a test of its own: the child process of the process tests. It runs a
/// PostgreSQL probe worker, 4 at a time, whose held probes never end, until
/// it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the apalis process tests; started by them"]
async fn child_apalis_worker() {
    let url = std::env::var(CHILD_DB).expect("started by a process test");
    let name = std::env::var(CHILD_WORKER).expect("started by a process test");
    let pool = PgPool::connect(&url).await.unwrap();
    let probes = Probes {
        runs: Runs::Postgres(pool.clone()),
        worker: name.clone(),
        release: Arc::new(Notify::new()),
        hold_forever: true,
    };
    let worker = WorkerBuilder::new(name.as_str())
        .backend(pg_storage(&pool))
        .data(probes)
        .concurrency(4)
        .build(probe);
    worker.run().await.unwrap();
}

/// Requirement 2: a worker process killed with SIGKILL mid-task loses no
/// task: once its lease (one missed one-second heartbeat, timed by
/// PostgreSQL's clock) has passed, another worker runs the task again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_killed_worker_process_s_task_runs_again_after_its_lease() {
    if support::common::service_url("DATABASE_URL").is_none() {
        return;
    }
    let f = Fixture::new(Backend::Postgres).await;
    f.push(&[Probe { n: 0, hold: true }]).await;
    let mut child = spawn_child(&f.url, "worker-doomed");
    let runs = f.runs.clone();
    eventually(
        Duration::from_secs(60),
        "the child starts probe 0",
        || async { !runs.events("started").await.is_empty() },
    )
    .await;
    child.kill().await.expect("SIGKILL");
    let _ = child.wait().await;

    let stop = Arc::new(Notify::new());
    let probes = f.probes("worker-survivor");
    let release = probes.release.clone();
    let survivor = spawn_worker(&f, probes, stop.clone());
    eventually(
        Duration::from_secs(60),
        "the survivor starts probe 0 again",
        || async { runs.events("started").await.len() == 2 },
    )
    .await;
    release.notify_one();
    eventually(Duration::from_secs(30), "probe 0 finishes", || async {
        !runs.events("finished").await.is_empty()
    })
    .await;
    stop.notify_waiters();
    let _ = tokio::time::timeout(Duration::from_secs(30), survivor).await;
    assert_eq!(
        runs.events("finished").await,
        [(0, "worker-survivor".to_owned())]
    );
    assert_eq!(
        runs.events("started").await,
        [
            (0, "worker-doomed".to_owned()),
            (0, "worker-survivor".to_owned())
        ]
    );
}

/// Requirement 3: two worker processes on one PostgreSQL, 4 tasks at a time
/// each, drain 40 tasks; every task runs exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_worker_processes_never_run_a_task_twice() {
    if support::common::service_url("DATABASE_URL").is_none() {
        return;
    }
    let f = Fixture::new(Backend::Postgres).await;
    let tasks: Vec<Probe> = (0..40).map(|n| Probe { n, hold: false }).collect();
    f.push(&tasks).await;
    let mut one = spawn_child(&f.url, "worker-one");
    let mut two = spawn_child(&f.url, "worker-two");
    let runs = f.runs.clone();
    eventually(Duration::from_secs(120), "40 tasks finish", || async {
        runs.events("finished").await.len() >= 40
    })
    .await;
    one.kill().await.unwrap();
    two.kill().await.unwrap();
    let started = numbers(&runs.events("started").await);
    assert_eq!(started, (0..40).collect::<Vec<_>>(), "each task ran once");
}

/// apalis-cron: an every-second schedule, run for about three seconds, must
/// tick once per second, never twice for one timestamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_ticks_once_per_scheduled_time() {
    use apalis_cron::{CronScheduler, Tick};
    let schedule = cron::Schedule::from_str("* * * * * *").unwrap();
    let ticks = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    async fn record(tick: Tick, ticks: Data<Arc<std::sync::Mutex<Vec<u64>>>>) {
        ticks.lock().unwrap().push(tick.get_timestamp());
    }
    let worker = WorkerBuilder::new("cron-probe")
        .backend(CronScheduler::new(schedule))
        .data(ticks.clone())
        .build(record);
    let seen = ticks.clone();
    let run = tokio::spawn(worker.run_until(async move {
        eventually(Duration::from_secs(30), "four ticks", || async {
            seen.lock().unwrap().len() >= 4
        })
        .await;
        Ok::<_, WorkerError>(())
    }));
    tokio::time::timeout(Duration::from_secs(40), run)
        .await
        .expect("the cron worker stops")
        .expect("cron task")
        .expect("cron worker");
    let ticks = ticks.lock().unwrap().clone();
    let mut distinct = ticks.clone();
    distinct.dedup();
    assert_eq!(ticks, distinct, "a timestamp ticked twice: {ticks:?}");
    for pair in ticks.windows(2) {
        assert_eq!(pair[1] - pair[0], 1, "ticks one second apart: {ticks:?}");
    }
}
