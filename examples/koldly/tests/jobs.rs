//! The job runner (apalis underneath) and `GET /api/jobs/{id}`, on SQLite
//! and PostgreSQL.
//!
//! apalis times its leases with the database's clock, which koldly's
//! `ManualClock` cannot move: the tests run with a 3 s lease (a heartbeat
//! every second, three missed beats) and wait for conditions with bounded
//! polls, never fixed sleeps. Two processes on one database are tested both
//! as two runners with their own pools and as this test binary plus a child
//! process running an ignored `child_process_*` test. A runner is killed two
//! ways: a real child process killed with SIGKILL mid-job, and
//! `RunnerHandle::kill`, which stops its runs and its apalis workers where
//! they stand without releasing anything.

mod support;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use koldly::{
    clock::{Clock, ManualClock},
    db::{
        Backend as DbBackend, Db,
        jobs::{self, Finish, NewJob},
        users::{self, NewUser},
    },
    jobs::{JobContext, JobError, JobQueue, JobsConfig, Registry},
};
use serde_json::json;
use support::{Backend, TestDb, TestServer};
use tokio::sync::{Barrier, Notify, mpsc};

/// A database, a manual clock and one user.
struct Fixture {
    _db: TestDb,
    url: String,
    db: Db,
    clock: Arc<ManualClock>,
    user_id: String,
}

impl Fixture {
    async fn new(backend: Backend) -> Self {
        let (test_db, url) = TestDb::create(backend).await;
        let db = Db::connect(&url).await.expect("database");
        let clock = Arc::new(ManualClock::new());
        let user = users::insert(
            &db.pool,
            NewUser {
                email: "owner@example.com",
                name: "Owner",
                password_hash: None,
                google_id: None,
                email_verified: true,
            },
            clock.now(),
        )
        .await
        .unwrap();
        Self {
            _db: test_db,
            url,
            db,
            clock,
            user_id: user.id,
        }
    }

    /// A queue on its own pool: another process on the same database.
    async fn process(&self) -> JobQueue {
        let db = Db::connect(&self.url).await.expect("second pool");
        JobQueue::new(db, self.clock.clone(), &config())
    }

    fn queue(&self) -> JobQueue {
        JobQueue::new(self.db.clone(), self.clock.clone(), &config())
    }
}

fn config() -> JobsConfig {
    JobsConfig {
        workers: 4,
        lease: Duration::from_secs(3),
        job_timeout: Duration::from_secs(60),
        poll_interval: Duration::from_millis(20),
        shutdown_grace: Duration::from_secs(30),
        max_attempts: 3,
        retry_backoff: steadfast::retry::Backoff::new(
            Duration::from_millis(20),
            2.0,
            Duration::from_millis(100),
            steadfast::retry::Jitter::None,
        ),
        ..JobsConfig::default()
    }
}

/// The database's clock, in unix seconds: apalis's leases run on it.
async fn db_now(db: &Db) -> i64 {
    let sql = match db.backend {
        DbBackend::Postgres => "SELECT CAST(EXTRACT(EPOCH FROM NOW()) AS BIGINT)",
        DbBackend::Sqlite => "SELECT CAST(strftime('%s', 'now') AS INTEGER)",
    };
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

/// Waits for `n` events; a guard of 30 s turns a hang into a failure.
async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("the expected event came")
        .expect("the channel is open")
}

async fn job(db: &Db, id: &str) -> jobs::Job {
    jobs::find(&db.pool, id)
        .await
        .unwrap()
        .expect("the job exists")
}

/// `GET /api/jobs/{id}`: the owner sees state, progress and the last error;
/// anyone else gets the same 404 as for a missing job, and nothing changes.
async fn job_status_is_owner_scoped(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let (owner, owner_id) = server.signup("owner@example.com", "owner password 1").await;
    let (other, _) = server.signup("other@example.com", "other password 1").await;
    let queued = server
        .handles
        .state
        .jobs
        .enqueue(&owner_id, "test.status", &json!({ "items": 5 }))
        .await
        .unwrap();
    let path = format!("/api/jobs/{}", queued.id);

    let res = server.authed("GET", &path, &owner, "").await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let body = res.json();
    assert_eq!(body["id"], queued.id);
    assert_eq!(body["kind"], "test.status");
    assert_eq!(body["state"], "queued");
    assert_eq!(body["progress"], json!({ "done": 0, "total": 0 }));
    assert_eq!(body["attempts"], 0);
    assert_eq!(body["max_attempts"], 3);
    assert_eq!(body["error"], json!(null));
    assert!(body.get("payload").is_none() && body.get("user_id").is_none());

    // A runner's progress and failure show.
    let db = server.handles.db();
    let now = server.clock.now();
    let claimed = jobs::start(&db.pool, &queued.id, "runner-x", now)
        .await
        .unwrap()
        .expect("started");
    assert!(
        jobs::progress(&db.pool, &claimed.id, "runner-x", 2, 5, now)
            .await
            .unwrap()
    );
    let body = server.authed("GET", &path, &owner, "").await.json();
    assert_eq!(body["state"], "running");
    assert_eq!(body["progress"], json!({ "done": 2, "total": 5 }));
    assert_eq!(body["attempts"], 1);
    let finish = Finish::Retry {
        error: "the language model did not answer in time",
        run_at: now + 10,
    };
    assert!(
        jobs::finish(&db.pool, &claimed.id, "runner-x", finish, now)
            .await
            .unwrap()
    );
    let body = server.authed("GET", &path, &owner, "").await.json();
    assert_eq!(body["state"], "queued");
    assert_eq!(body["error"], "the language model did not answer in time");

    // Another user's job, a missing job and an absurd id: one 404.
    let before = job(db, &queued.id).await;
    let foreign = server
        .authed("GET", &path, &other, "")
        .await
        .assert_problem(404);
    let missing_path = format!("/api/jobs/{}", uuid::Uuid::now_v7());
    let missing = server
        .authed("GET", &missing_path, &owner, "")
        .await
        .assert_problem(404);
    assert_eq!(foreign["detail"], missing["detail"]);
    assert_eq!(foreign["title"], missing["title"]);
    assert_eq!(foreign.get("type"), missing.get("type"));
    let long = format!("/api/jobs/{}", "a".repeat(200));
    server
        .authed("GET", &long, &owner, "")
        .await
        .assert_problem(404);
    let after = job(db, &queued.id).await;
    assert_eq!(
        (
            after.state,
            after.attempts,
            after.updated_at,
            after.last_error
        ),
        (
            before.state,
            before.attempts,
            before.updated_at,
            before.last_error
        ),
        "another user's read changes nothing"
    );

    // No token: 401.
    server.get(&path).await.assert_problem(401);
    server.stop().await;
}

/// While one runner holds a job, a second runner on the same database (its
/// own pool) leaves it alone — while running the jobs queued after it — and
/// the job runs once.
async fn a_claimed_job_is_not_run_by_another_runner(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let gate = Arc::new(Notify::new());
    let registry = {
        let gate = gate.clone();
        Registry::new().register("test.block", move |ctx: JobContext| {
            let (started_tx, gate) = (started_tx.clone(), gate.clone());
            async move {
                started_tx.send(ctx.job.id.clone()).unwrap();
                if ctx.job.payload["block"] == json!(true) {
                    gate.notified().await;
                }
                Ok::<_, JobError>(())
            }
        })
    };
    let one_at_a_time = JobsConfig {
        workers: 1,
        ..config()
    };
    let queue = f.queue();
    let first = queue
        .runner(registry.clone(), one_at_a_time.clone())
        .spawn();
    let queued = queue
        .enqueue(&f.user_id, "test.block", &json!({ "block": true }))
        .await
        .unwrap();
    assert_eq!(next(&mut started).await, queued.id);

    let held = job(&f.db, &queued.id).await;
    assert_eq!(held.state, "running");
    // Another process's runner keeps working meanwhile (it runs the jobs
    // queued after), and never runs the held one.
    let other = f.process().await;
    let second = other.runner(registry, one_at_a_time).spawn();
    for _ in 0..2 {
        let quick = queue
            .enqueue(&f.user_id, "test.block", &json!({ "block": false }))
            .await
            .unwrap();
        assert_eq!(next(&mut started).await, quick.id);
    }
    assert_eq!(job(&f.db, &queued.id).await.attempts, 1);

    gate.notify_one();
    assert_eq!(first.shutdown().await, 0);
    assert_eq!(second.shutdown().await, 0);
    assert!(started.try_recv().is_err(), "the job ran exactly once");
    let done = job(&f.db, &queued.id).await;
    assert_eq!((done.state.as_str(), done.attempts), ("succeeded", 1));
}

/// Two runners with their own pools (two processes), 4 workers each, drain
/// 40 jobs together; each job runs exactly once. Jobs wait for each other in
/// groups of 8, so every group needs both runners at once.
async fn two_runners_never_run_a_job_twice(backend: Backend) {
    let f = Fixture::new(backend).await;
    let runs: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let by_runner: Arc<Mutex<HashMap<&'static str, u32>>> = Arc::default();
    let group = Arc::new(Barrier::new(8));
    let (done_tx, mut done) = mpsc::unbounded_channel::<String>();
    let registry = |name: &'static str| {
        let (runs, by_runner, group, done_tx) = (
            runs.clone(),
            by_runner.clone(),
            group.clone(),
            done_tx.clone(),
        );
        Registry::new().register("test.count", move |ctx: JobContext| {
            let (runs, by_runner, group, done_tx) = (
                runs.clone(),
                by_runner.clone(),
                group.clone(),
                done_tx.clone(),
            );
            async move {
                *runs.lock().unwrap().entry(ctx.job.id.clone()).or_default() += 1;
                *by_runner.lock().unwrap().entry(name).or_default() += 1;
                group.wait().await;
                done_tx.send(ctx.job.id.clone()).unwrap();
                Ok::<_, JobError>(())
            }
        })
    };
    let queue = f.queue();
    let mut ids = Vec::new();
    for n in 0..40 {
        let job = queue
            .enqueue(&f.user_id, "test.count", &json!({ "n": n }))
            .await
            .unwrap();
        ids.push(job.id);
    }
    let a = queue.runner(registry("a"), config()).spawn();
    let other = f.process().await;
    let b = other.runner(registry("b"), config()).spawn();
    for _ in 0..40 {
        next(&mut done).await;
    }
    a.shutdown().await;
    b.shutdown().await;
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 40, "every job ran");
    assert!(runs.values().all(|&n| n == 1), "no job ran twice: {runs:?}");
    let by_runner = by_runner.lock().unwrap().clone();
    assert_eq!(by_runner, HashMap::from([("a", 20), ("b", 20)]));
    for id in &ids {
        let job = job(&f.db, id).await;
        assert_eq!((job.state.as_str(), job.attempts), ("succeeded", 1), "{id}");
    }
}

/// A runner killed mid-job leaves the job leased; nobody runs it until the
/// lease passes, then another runner does, and it succeeds.
async fn a_killed_runner_s_job_runs_again_after_its_lease(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (started_tx, mut started) = mpsc::unbounded_channel::<i64>();
    let (finished_tx, mut finished) = mpsc::unbounded_channel::<i64>();
    let registry = Registry::new().register("test.crash", move |ctx: JobContext| {
        let (started_tx, finished_tx) = (started_tx.clone(), finished_tx.clone());
        async move {
            started_tx.send(ctx.job.attempts).unwrap();
            if ctx.job.attempts == 1 {
                // The first run never ends on its own: its runner is killed.
                std::future::pending::<()>().await;
            }
            finished_tx.send(ctx.job.attempts).unwrap();
            Ok::<_, JobError>(())
        }
    });
    let queue = f.queue();
    let doomed = queue.runner(registry.clone(), config()).spawn();
    let queued = queue
        .enqueue(&f.user_id, "test.crash", &json!({}))
        .await
        .unwrap();
    assert_eq!(next(&mut started).await, 1);
    doomed.kill();

    let orphan = job(&f.db, &queued.id).await;
    assert_eq!(orphan.state, "running", "the kill released nothing");
    assert_eq!(orphan.attempts, 1);

    let killed_at = db_now(&f.db).await;
    let other = f.process().await;
    let survivor = other.runner(registry, config()).spawn();
    assert_eq!(next(&mut started).await, 2, "run again after the lease");
    assert!(
        db_now(&f.db).await > killed_at,
        "not before the dead runner's lease passed"
    );
    assert_eq!(next(&mut finished).await, 2);
    survivor.shutdown().await;
    let done = job(&f.db, &queued.id).await;
    assert_eq!((done.state.as_str(), done.attempts), ("succeeded", 2));
    assert!(finished.try_recv().is_err(), "the first run never finished");
}

/// The same with a real process: a child process (this test binary, running
/// only `child_process_runner`) claims the job and is killed with SIGKILL
/// mid-job; the job is still leased to it, and runs again here once the lease
/// has passed.
async fn a_killed_process_s_job_runs_again_after_its_lease(backend: Backend) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let f = Fixture::new(backend).await;
    let queued = f
        .queue()
        .enqueue(&f.user_id, "test.process", &json!({}))
        .await
        .unwrap();
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_process_runner",
            "--nocapture",
        ])
        .env(CHILD_DB, &f.url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the child process starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = format!("STARTED {}", queued.id);
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line == started {
                return;
            }
        }
        panic!("the child process ended before running the job");
    })
    .await
    .expect("the child process ran the job");
    child.kill().await.expect("SIGKILL");

    let orphan = job(&f.db, &queued.id).await;
    assert_eq!((orphan.state.as_str(), orphan.attempts), ("running", 1));
    let (ran_tx, mut ran) = mpsc::unbounded_channel::<i64>();
    let registry = Registry::new().register("test.process", move |ctx: JobContext| {
        let ran_tx = ran_tx.clone();
        async move {
            ran_tx.send(ctx.job.attempts).unwrap();
            Ok::<_, JobError>(())
        }
    });
    let killed_at = db_now(&f.db).await;
    let survivor = f.queue().runner(registry, config()).spawn();
    assert_eq!(next(&mut ran).await, 2, "run again after the lease");
    assert!(
        db_now(&f.db).await > killed_at,
        "not before the killed process's lease passed"
    );
    survivor.shutdown().await;
    let done = job(&f.db, &queued.id).await;
    assert_eq!((done.state.as_str(), done.attempts), ("succeeded", 2));
}

/// The database URL the child process of the kill test runs on.
const CHILD_DB: &str = "KOLDLY_TEST_JOB_CHILD_DB";

/// Not a test of its own: the child process of
/// `a_killed_process_s_job_runs_again_after_its_lease`, started with
/// `--ignored --exact child_process_runner`. It runs a job runner whose
/// `test.process` jobs print `STARTED {id}` and never end, until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the kill test; started by it"]
async fn child_process_runner() {
    let url = std::env::var(CHILD_DB).expect("started by the kill test");
    let db = Db::connect(&url).await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(koldly::clock::SystemClock);
    let queue = JobQueue::new(db, clock, &config());
    let registry = Registry::new().register("test.process", |ctx: JobContext| async move {
        println!("STARTED {}", ctx.job.id);
        std::future::pending::<()>().await;
        Ok::<_, JobError>(())
    });
    let _runner = queue.runner(registry, config()).spawn();
    std::future::pending::<()>().await;
}

/// Two koldly processes on one database — this one and a child process —
/// drain 40 jobs, 4 workers each, in rounds of 8 that need both at once (each
/// round's jobs wait for a `GO` the test sends when all 8 have started); every
/// job runs exactly once.
async fn two_processes_never_run_a_job_twice(backend: Backend) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let f = Fixture::new(backend).await;
    let queue = f.queue();
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(
            queue
                .enqueue(&f.user_id, "test.round", &json!({ "n": n }))
                .await
                .unwrap()
                .id,
        );
    }
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_process_round_runner",
            "--nocapture",
        ])
        .env(CHILD_DB, &f.url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the child process starts");
    let mut child_go = child.stdin.take().unwrap();
    let mut child_lines = BufReader::new(child.stdout.take().unwrap()).lines();

    let (go, _) = tokio::sync::watch::channel(0u32);
    let (ran_tx, mut ran) = mpsc::unbounded_channel::<String>();
    let registry = Registry::new().register("test.round", {
        let go = go.clone();
        move |ctx: JobContext| {
            let (ran_tx, mut go) = (ran_tx.clone(), go.subscribe());
            async move {
                ran_tx.send(ctx.job.id.clone()).unwrap();
                let _ = go.changed().await;
                Ok::<_, JobError>(())
            }
        }
    });
    let here = queue.runner(registry, config()).spawn();

    let mut runs: HashMap<String, u32> = HashMap::new();
    let mut by_process = [0u32; 2];
    for round in 1..=5 {
        for _ in 0..4 {
            *runs.entry(next(&mut ran).await).or_default() += 1;
            by_process[0] += 1;
        }
        let mut from_child = 0;
        while from_child < 4 {
            let line = tokio::time::timeout(Duration::from_secs(60), child_lines.next_line())
                .await
                .expect("the child reports")
                .unwrap()
                .expect("the child is alive");
            if let Some(id) = line.strip_prefix("RAN ") {
                *runs.entry(id.to_owned()).or_default() += 1;
                from_child += 1;
            }
        }
        by_process[1] += 4;
        go.send_replace(round);
        child_go.write_all(b"GO\n").await.unwrap();
    }
    // Every job recorded as succeeded, by whichever process ran it.
    let all_done = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let mut succeeded = 0;
            for id in &ids {
                succeeded += usize::from(job(&f.db, id).await.state == "succeeded");
            }
            if succeeded == ids.len() {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    here.shutdown().await;
    child.kill().await.unwrap();
    assert!(all_done.is_ok(), "every job succeeded");
    assert_eq!(runs.len(), 40, "every job ran");
    assert!(runs.values().all(|&n| n == 1), "no job ran twice: {runs:?}");
    assert_eq!(by_process, [20, 20]);
    for id in &ids {
        assert_eq!(job(&f.db, id).await.attempts, 1, "{id}");
    }
}

/// Not a test of its own: the child process of
/// `two_processes_never_run_a_job_twice`. Its `test.round` jobs print
/// `RAN {id}` and end at the next `GO` line on stdin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the two-process test; started by it"]
async fn child_process_round_runner() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let url = std::env::var(CHILD_DB).expect("started by the two-process test");
    let db = Db::connect(&url).await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(koldly::clock::SystemClock);
    let queue = JobQueue::new(db, clock, &config());
    let (go, _) = tokio::sync::watch::channel(0u32);
    let registry = Registry::new().register("test.round", {
        let go = go.clone();
        move |ctx: JobContext| {
            let mut go = go.subscribe();
            async move {
                println!("RAN {}", ctx.job.id);
                let _ = go.changed().await;
                Ok::<_, JobError>(())
            }
        }
    });
    let _runner = queue.runner(registry, config()).spawn();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut round = 0;
    while let Ok(Some(_)) = lines.next_line().await {
        round += 1;
        go.send_replace(round);
    }
    std::future::pending::<()>().await;
}

/// Shutdown stops claiming at once, lets a running job finish, and reports
/// none interrupted; with no grace left, a running job is queued again.
async fn shutdown_stops_claiming_and_lets_running_jobs_finish(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (started_tx, mut started) = mpsc::unbounded_channel::<String>();
    let gate = Arc::new(Notify::new());
    let registry = {
        let gate = gate.clone();
        Registry::new().register("test.slow", move |ctx: JobContext| {
            let (started_tx, gate) = (started_tx.clone(), gate.clone());
            async move {
                started_tx.send(ctx.job.id.clone()).unwrap();
                gate.notified().await;
                Ok::<_, JobError>(())
            }
        })
    };
    let queue = f.queue();
    let runner = queue.runner(registry.clone(), config()).spawn();
    let running = queue
        .enqueue(&f.user_id, "test.slow", &json!({}))
        .await
        .unwrap();
    assert_eq!(next(&mut started).await, running.id);

    runner.stop_claiming();
    let shutdown = tokio::spawn({
        let runner = runner.clone();
        async move { runner.shutdown().await }
    });
    gate.notify_one();
    // Queued after the stop. (Not before the running job is released: on
    // SQLite, apalis-sqlite 1.0 can leave a fetch's write transaction parked
    // while its worker stops, and an enqueue then meets "database is locked"
    // until the running job ends; see the jobs module docs.)
    let waiting = queue
        .enqueue(&f.user_id, "test.slow", &json!({}))
        .await
        .unwrap();
    assert_eq!(shutdown.await.unwrap(), 0, "nothing was interrupted");
    assert!(
        started.try_recv().is_err(),
        "no job was claimed after the stop"
    );
    assert_eq!(job(&f.db, &running.id).await.state, "succeeded");
    let left = job(&f.db, &waiting.id).await;
    assert_eq!((left.state.as_str(), left.attempts), ("queued", 0));

    // No grace: the running job is interrupted and queued again, its attempt
    // not counted.
    let hasty = queue
        .runner(
            registry,
            JobsConfig {
                shutdown_grace: Duration::ZERO,
                ..config()
            },
        )
        .spawn();
    assert_eq!(next(&mut started).await, waiting.id);
    assert_eq!(hasty.shutdown().await, 1);
    let requeued = job(&f.db, &waiting.id).await;
    assert_eq!((requeued.state.as_str(), requeued.attempts), ("queued", 0));
    assert!(requeued.finished_at.is_none());
}
/// A transient failure is retried in process after its backoff (steadfast's retry layer); a
/// A transient failure is retried after its backoff (on the manual clock); a
/// permanent one, a panic and a run past the time limit (once attempts are
/// spent) fail the job with an owner-facing error.
async fn failures_are_classified_and_recorded(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (ran_tx, mut ran) = mpsc::unbounded_channel::<(String, i64)>();
    let registry = Registry::new()
        .register("test.flaky", {
            let ran_tx = ran_tx.clone();
            move |ctx: JobContext| {
                let ran_tx = ran_tx.clone();
                async move {
                    ran_tx.send(("flaky".into(), ctx.job.attempts)).unwrap();
                    if ctx.job.attempts == 1 {
                        return Err(JobError::transient("the provider is overloaded"));
                    }
                    ctx.progress(1, 1).await
                }
            }
        })
        .register("test.broken", {
            let ran_tx = ran_tx.clone();
            move |ctx: JobContext| {
                let ran_tx = ran_tx.clone();
                async move {
                    ran_tx.send(("broken".into(), ctx.job.attempts)).unwrap();
                    Err::<(), _>(JobError::permanent("the campaign no longer exists"))
                }
            }
        })
        .register("test.panics", {
            let ran_tx = ran_tx.clone();
            move |ctx: JobContext| {
                let ran_tx = ran_tx.clone();
                async move {
                    ran_tx.send(("panics".into(), ctx.job.attempts)).unwrap();
                    let items: Vec<u8> = Vec::new();
                    let _ = items[ctx.job.attempts as usize];
                    Ok::<_, JobError>(())
                }
            }
        })
        .register("test.hangs", move |ctx: JobContext| {
            let ran_tx = ran_tx.clone();
            async move {
                ran_tx.send(("hangs".into(), ctx.job.attempts)).unwrap();
                std::future::pending::<()>().await;
                Ok::<_, JobError>(())
            }
        });
    let queue = f.queue();
    let flaky = queue
        .enqueue(&f.user_id, "test.flaky", &json!({}))
        .await
        .unwrap();
    let broken = queue
        .enqueue(&f.user_id, "test.broken", &json!({}))
        .await
        .unwrap();
    let panics = queue
        .enqueue(&f.user_id, "test.panics", &json!({}))
        .await
        .unwrap();
    let runner = queue
        .runner(
            registry.clone(),
            JobsConfig {
                workers: 1,
                ..config()
            },
        )
        .spawn();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(next(&mut ran).await);
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("broken".into(), 1),
            ("flaky".into(), 1),
            ("flaky".into(), 2),
            ("panics".into(), 1)
        ],
        "the transient failure was retried (after its backoff), the others not"
    );
    runner.shutdown().await;
    let recovered = job(&f.db, &flaky.id).await;
    assert_eq!(
        (recovered.state.as_str(), recovered.attempts),
        ("succeeded", 2)
    );
    assert_eq!((recovered.progress_done, recovered.progress_total), (1, 1));
    assert_eq!(
        recovered.last_error.as_deref(),
        Some("the provider is overloaded"),
        "the failed attempt's reason stays visible"
    );
    let failed = job(&f.db, &broken.id).await;
    assert_eq!((failed.state.as_str(), failed.attempts), ("failed", 1));
    assert_eq!(
        failed.last_error.as_deref(),
        Some("the campaign no longer exists")
    );
    assert!(failed.finished_at.is_some());
    let panicked = job(&f.db, &panics.id).await;
    assert_eq!(panicked.state, "failed");
    assert_eq!(
        panicked.last_error.as_deref(),
        Some("the job failed unexpectedly")
    );

    // A run past the time limit on its last attempt fails the job.
    let once = JobsConfig {
        max_attempts: 1,
        ..config()
    };
    let hangs = JobQueue::new(f.db.clone(), f.clock.clone(), &once)
        .enqueue(&f.user_id, "test.hangs", &json!({}))
        .await
        .unwrap();
    let runner = queue
        .runner(
            registry,
            JobsConfig {
                job_timeout: Duration::from_millis(50),
                ..config()
            },
        )
        .spawn();
    assert_eq!(next(&mut ran).await, ("hangs".into(), 1));
    let finished = {
        // The run ends by its time limit; shutdown then waits for the record.
        tokio::time::timeout(Duration::from_secs(30), runner.shutdown())
            .await
            .expect("shutdown finished")
    };
    assert_eq!(
        finished, 0,
        "the run ended by its own time limit, not by shutdown"
    );
    let timed_out = job(&f.db, &hangs.id).await;
    assert_eq!(timed_out.state, "failed");
    assert_eq!(
        timed_out.last_error.as_deref(),
        Some("the job ran past its time limit")
    );
}

/// A running job's lease is kept by its worker's heartbeats, so a run longer
/// than the lease is not taken over: with a second runner polling, the job
/// runs past twice its 3 s lease (on the database's clock, which apalis's
/// leases use; the test polls it, never sleeps a fixed time) and runs once.
async fn a_running_job_keeps_its_lease(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
    let gate = Arc::new(Notify::new());
    let registry = {
        let gate = gate.clone();
        Registry::new().register("test.long", move |_: JobContext| {
            let (started_tx, gate) = (started_tx.clone(), gate.clone());
            async move {
                started_tx.send(()).unwrap();
                gate.notified().await;
                Ok::<_, JobError>(())
            }
        })
    };
    let queue = f.queue();
    let runner = queue.runner(registry.clone(), config()).spawn();
    let queued = queue
        .enqueue(&f.user_id, "test.long", &json!({}))
        .await
        .unwrap();
    next(&mut started).await;
    let other = f.process().await;
    let second = other.runner(registry, config()).spawn();
    let began = db_now(&f.db).await;
    let lease = i64::try_from(config().lease.as_secs()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        while db_now(&f.db).await < began + 2 * lease + 1 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the database clock moved on");
    assert!(started.try_recv().is_err(), "no one else ran the job");
    gate.notify_one();
    runner.shutdown().await;
    second.shutdown().await;
    let done = job(&f.db, &queued.id).await;
    assert_eq!((done.state.as_str(), done.attempts), ("succeeded", 1));
}

/// A job whose runs keep dying (each claim counts) fails once its attempts
/// are spent, without running again.
async fn a_job_that_keeps_killing_its_runner_fails(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (started_tx, mut started) = mpsc::unbounded_channel::<i64>();
    let registry = Registry::new().register("test.poison", move |ctx: JobContext| {
        let started_tx = started_tx.clone();
        async move {
            started_tx.send(ctx.job.attempts).unwrap();
            std::future::pending::<()>().await;
            Ok::<_, JobError>(())
        }
    });
    let once = JobsConfig {
        max_attempts: 1,
        ..config()
    };
    let queued = JobQueue::new(f.db.clone(), f.clock.clone(), &once)
        .enqueue(&f.user_id, "test.poison", &json!({}))
        .await
        .unwrap();
    let queue = f.queue();
    let doomed = queue.runner(registry.clone(), config()).spawn();
    assert_eq!(next(&mut started).await, 1);
    doomed.kill();
    let survivor = queue.runner(registry, config()).spawn();
    // The survivor claims it (attempt 2 of 1) and fails it without running it.
    let failed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let job = job(&f.db, &queued.id).await;
            if job.state == "failed" {
                return job;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the job failed");
    survivor.shutdown().await;
    assert_eq!(failed.attempts, 2);
    assert_eq!(
        failed.last_error.as_deref(),
        Some("the job was interrupted too many times")
    );
    assert!(started.try_recv().is_err(), "it did not run again");
}

/// A job whose row was written but whose apalis task never was (a crash
/// between the two): what `JobQueue::enqueue` leaves when it dies midway.
async fn orphan(f: &Fixture, n: i64) -> String {
    let payload = json!({ "n": n });
    let job = jobs::enqueue(
        &f.db.pool,
        NewJob {
            user_id: &f.user_id,
            kind: "test.count",
            payload: &payload,
            max_attempts: 3,
            run_at: f.clock.now(),
        },
        f.clock.now(),
    )
    .await
    .unwrap();
    job.id
}

/// A runner of `test.count` that counts runs per job and reports each.
fn counting(
    runs: &Arc<Mutex<HashMap<String, u32>>>,
    done_tx: &mpsc::UnboundedSender<String>,
) -> Registry {
    let (runs, done_tx) = (runs.clone(), done_tx.clone());
    Registry::new().register("test.count", move |ctx: JobContext| {
        let (runs, done_tx) = (runs.clone(), done_tx.clone());
        async move {
            *runs.lock().unwrap().entry(ctx.job.id.clone()).or_default() += 1;
            done_tx.send(ctx.job.id.clone()).unwrap();
            Ok::<_, JobError>(())
        }
    })
}

/// The orphan sweep pushes a queued job apalis does not hold once its row is
/// older than `orphan_after`, never a younger one nor one apalis holds; a
/// second sweep pushes nothing; the orphan then runs, once.
async fn the_sweep_queues_orphaned_jobs_again(backend: Backend) {
    let f = Fixture::new(backend).await;
    let queue = f.queue();
    let held = queue
        .enqueue(&f.user_id, "test.count", &json!({ "n": 0 }))
        .await
        .unwrap();
    let orphaned = orphan(&f, 1).await;
    assert_eq!(
        queue.sweep_orphans().await.unwrap(),
        0,
        "too young to sweep"
    );
    f.clock
        .advance(config().orphan_after + Duration::from_secs(1));
    assert_eq!(queue.sweep_orphans().await.unwrap(), 1, "only the orphan");
    assert_eq!(
        queue.sweep_orphans().await.unwrap(),
        0,
        "apalis holds it now"
    );
    let runs: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let runner = queue.runner(counting(&runs, &done_tx), config()).spawn();
    next(&mut done).await;
    next(&mut done).await;
    runner.shutdown().await;
    let runs = runs.lock().unwrap().clone();
    assert_eq!(
        runs,
        HashMap::from([(held.id.clone(), 1), (orphaned.clone(), 1)])
    );
    for id in [&held.id, &orphaned] {
        assert_eq!(job(&f.db, id).await.state, "succeeded", "{id}");
    }
    assert_eq!(queue.sweep_orphans().await.unwrap(), 0, "nothing is queued");
}

/// Periodic work runs on its apalis-cron schedule (every second here) in
/// two processes on one database: orphaned jobs written after both started
/// are swept by the next ticks and each runs exactly once.
async fn periodic_sweeps_in_two_processes_run_each_orphan_once(backend: Backend) {
    let f = Fixture::new(backend).await;
    let every_second = JobsConfig {
        periodic: "* * * * * *".parse().unwrap(),
        ..config()
    };
    let runs: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let one = JobQueue::new(f.db.clone(), f.clock.clone(), &every_second);
    let other_db = Db::connect(&f.url).await.expect("second pool");
    let two = JobQueue::new(other_db, f.clock.clone(), &every_second);
    let runner_one = one.runner(counting(&runs, &done_tx), config()).spawn();
    let runner_two = two.runner(counting(&runs, &done_tx), config()).spawn();
    let periodic_one = one.spawn_periodic(None);
    let periodic_two = two.spawn_periodic(None);
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(orphan(&f, n).await);
    }
    f.clock
        .advance(config().orphan_after + Duration::from_secs(1));
    for _ in 0..6 {
        next(&mut done).await;
    }
    assert_eq!(
        one.sweep_orphans().await.unwrap(),
        0,
        "every orphan is on apalis's queue"
    );
    periodic_one.shutdown(Duration::from_secs(5)).await;
    periodic_two.shutdown(Duration::from_secs(5)).await;
    runner_one.shutdown().await;
    runner_two.shutdown().await;
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 6, "every orphan ran: {runs:?}");
    assert!(runs.values().all(|&n| n == 1), "none ran twice: {runs:?}");
    assert!(done.try_recv().is_err(), "no run after the six");
    for id in &ids {
        let job = job(&f.db, id).await;
        assert_eq!((job.state.as_str(), job.attempts), ("succeeded", 1), "{id}");
    }
}

on_both!(
    the_sweep_queues_orphaned_jobs_again,
    periodic_sweeps_in_two_processes_run_each_orphan_once,
    a_running_job_keeps_its_lease,
    a_job_that_keeps_killing_its_runner_fails,
    job_status_is_owner_scoped,
    a_claimed_job_is_not_run_by_another_runner,
    two_runners_never_run_a_job_twice,
    two_processes_never_run_a_job_twice,
    a_killed_runner_s_job_runs_again_after_its_lease,
    a_killed_process_s_job_runs_again_after_its_lease,
    shutdown_stops_claiming_and_lets_running_jobs_finish,
    failures_are_classified_and_recorded,
);
