//! Soak: a realistic mix of requests at fixed concurrency against the real
//! koldly binary (loopback, SQLite in a temp file, idempotency keys and rate
//! limits in Redis), checking that nothing degrades while it runs:
//!
//! - no 5xx, and every answer is the one its request expects (the mix is all
//!   valid requests, so a 4xx is a finding too);
//! - p50 / p99 latency, overall and per kind of request, printed;
//! - the koldly process's resident memory (`VmRSS` of `/proc/PID/status`,
//!   sampled every second) flat after the warm-up: the lowest of the last
//!   fifth of the run at most [`RSS_GROWTH_BOUND`] above the lowest of the
//!   first fifth after the warm-up (the floor: argon2's 19 MiB buffers come
//!   and go with each login, memory kept raises the floor);
//! - the idempotency entries in Redis bounded: never more new entries than
//!   distinct keys sent (a replay adds none), each of them stored once with
//!   an expiry no later than the 24-hour retention.
//!
//! The mix, per worker: a user arriving (signup then login, from an address of
//! its own behind the trusted proxy: 1 %), campaign reads (list, one; 37 %),
//! campaign writes (update 8 %, archive 4 %), keyed creates with
//! `Idempotency-Key` (10 %, a third of them retried with the same key), CSV
//! prospect imports of 5 rows (10 %), prospect lists (10 %) and inbox reads
//! (replies and stats, 20 %). Users are on the `scale` plan (set in the
//! database after signup), so plan limits do not refuse the load.
//!
//! `soak_short` (20 s, 8 workers) runs in CI; `soak` runs `SOAK_SECONDS`
//! (default 300) on demand:
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379/ SOAK_SECONDS=300 \
//!   cargo test -p koldly --test soak -- --ignored --nocapture
//! ```
//!
//! `KOLDLY_BIN=path` runs another build of the binary (e.g. a release build).
//! Redis database [`REDIS_DB`] is the soak's own, so its entries can be
//! counted. The load is bounded in time and sent to loopback only.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use steadfast::idempotency::{EntryKey, IdempotencyKey, RedisStore};

/// The Redis database the soak's koldly keeps its idempotency entries in.
const REDIS_DB: u8 = 13;
/// How much the koldly process's RSS may grow after the warm-up.
const RSS_GROWTH_BOUND: f64 = 0.10;
/// The idempotency layer's retention (steadfast's default).
const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// The prefix of the Redis keys of idempotency entries (steadfast's default).
const ENTRY_PREFIX: &str = "steadfast:idempotency:";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_short() {
    run(Duration::from_secs(20), Duration::from_secs(8), 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes long: SOAK_SECONDS=300 cargo test -p koldly --test soak -- --ignored"]
async fn soak() {
    let seconds = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let duration = Duration::from_secs(seconds);
    run(duration, (duration / 5).min(Duration::from_secs(60)), 8).await;
}

/// The kinds of request in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Signup,
    Login,
    ListCampaigns,
    GetCampaign,
    UpdateCampaign,
    ArchiveCampaign,
    KeyedCreate,
    KeyedReplay,
    ImportCsv,
    ListProspects,
    InboxReplies,
    InboxStats,
}

/// One answered request.
struct Sample {
    op: Op,
    micros: u64,
    status: StatusCode,
}

/// What the workers share.
struct Load {
    client: Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    db: sqlx::AnyPool,
    /// Addresses handed to arriving users (each its own client).
    next_ip: AtomicUsize,
    /// Every (scope, key) sent with `Idempotency-Key`.
    keys: Mutex<Vec<(String, String)>>,
    /// Answers other than the one expected: (op, status, body).
    unexpected: Mutex<Vec<(Op, StatusCode, String)>>,
}

/// A signed-in user of the soak.
struct User {
    id: String,
    token: String,
    ip: String,
    campaigns: Vec<String>,
}

impl Load {
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        samples: &mut Vec<Sample>,
        op: Op,
        method: Method,
        path: &str,
        user: Option<&User>,
        ip: &str,
        body: Option<(&str, String)>,
        key: Option<&str>,
    ) -> (StatusCode, Bytes) {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("x-forwarded-for", ip);
        if let Some(user) = user {
            request = request.header("authorization", format!("Bearer {}", user.token));
        }
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let body = match body {
            Some((content_type, body)) => {
                request = request.header("content-type", content_type);
                Full::new(Bytes::from(body))
            }
            None => Full::default(),
        };
        let started = Instant::now();
        let response = self
            .client
            .request(request.body(body).unwrap())
            .await
            .unwrap_or_else(|e| panic!("{op:?} {path}: {e}"));
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        samples.push(Sample {
            op,
            micros: started.elapsed().as_micros() as u64,
            status,
        });
        (status, bytes)
    }

    /// Records `status` when it is not `want`.
    fn expect(&self, op: Op, want: StatusCode, (status, body): &(StatusCode, Bytes)) -> bool {
        if *status == want {
            return true;
        }
        self.unexpected.lock().unwrap().push((
            op,
            *status,
            String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
        ));
        false
    }

    /// A user arriving: signup and login from an address of its own, then
    /// moved to the `scale` plan.
    async fn arrive(&self, samples: &mut Vec<Sample>, worker: usize) -> Option<User> {
        let n = self.next_ip.fetch_add(1, Ordering::Relaxed);
        let ip = format!("198.18.{}.{}", n / 250, n % 250 + 1);
        let email = format!("soak-{worker}-{n}@example.com");
        let credentials = json!({ "email": email, "password": "correct horse 42" });
        let signup = json!({ "email": email, "password": "correct horse 42", "name": "Soak" });
        let reply = self
            .call(
                samples,
                Op::Signup,
                Method::POST,
                "/api/auth/signup",
                None,
                &ip,
                Some(("application/json", signup.to_string())),
                None,
            )
            .await;
        if !self.expect(Op::Signup, StatusCode::CREATED, &reply) {
            return None;
        }
        let id = json_of(&reply.1)["user"]["id"].as_str()?.to_owned();
        let reply = self
            .call(
                samples,
                Op::Login,
                Method::POST,
                "/api/auth/login",
                None,
                &ip,
                Some(("application/json", credentials.to_string())),
                None,
            )
            .await;
        if !self.expect(Op::Login, StatusCode::OK, &reply) {
            return None;
        }
        let token = json_of(&reply.1)["token"].as_str()?.to_owned();
        sqlx::query("UPDATE users SET subscription_plan = 'scale' WHERE id = $1")
            .bind(&id)
            .execute(&self.db)
            .await
            .unwrap();
        Some(User {
            id,
            token,
            ip,
            campaigns: Vec::new(),
        })
    }

    /// A keyed create, retried with the same key a third of the time: the
    /// retry must be the first answer replayed.
    async fn keyed_create(&self, samples: &mut Vec<Sample>, user: &mut User, rng: &mut StdRng) {
        let key = uuid::Uuid::new_v4().to_string();
        self.keys
            .lock()
            .unwrap()
            .push((format!("user:{}", user.id), key.clone()));
        let body = json!({ "name": format!("Soak {}", &key[..8]) }).to_string();
        let mut answers = Vec::new();
        let retried = rng.random_range(0..3) == 0;
        for op in [Op::KeyedCreate, Op::KeyedReplay]
            .into_iter()
            .take(1 + retried as usize)
        {
            let reply = self
                .call(
                    samples,
                    op,
                    Method::POST,
                    "/api/campaigns",
                    Some(&*user),
                    &user.ip,
                    Some(("application/json", body.clone())),
                    Some(&key),
                )
                .await;
            if !self.expect(op, StatusCode::CREATED, &reply) {
                return;
            }
            answers.push(reply);
        }
        let first = &answers[0];
        if answers.iter().any(|again| again.1 != first.1) {
            self.unexpected.lock().unwrap().push((
                Op::KeyedReplay,
                StatusCode::CREATED,
                "a replay that differs from the first answer".into(),
            ));
        }
        if let Some(id) = json_of(&first.1)["id"].as_str() {
            user.campaigns.push(id.to_owned());
        }
    }

    /// One request (or a user's arrival) drawn from the mix.
    async fn step(
        &self,
        samples: &mut Vec<Sample>,
        user: &mut User,
        worker: usize,
        rng: &mut StdRng,
    ) {
        let roll = rng.random_range(0..100);
        let campaign = (!user.campaigns.is_empty())
            .then(|| user.campaigns[rng.random_range(0..user.campaigns.len())].clone());
        let (op, method, path, body, want) = match (roll, campaign) {
            (0, _) => {
                if let Some(arrived) = self.arrive(samples, worker).await {
                    *user = arrived;
                }
                return;
            }
            (46..=55, _) | (_, None) => return self.keyed_create(samples, user, rng).await,
            (1..=25, _) => (
                Op::ListCampaigns,
                Method::GET,
                "/api/campaigns?limit=20".to_owned(),
                None,
                StatusCode::OK,
            ),
            (26..=37, Some(c)) => (
                Op::GetCampaign,
                Method::GET,
                format!("/api/campaigns/{c}"),
                None,
                StatusCode::OK,
            ),
            (38..=45, Some(c)) => (
                Op::UpdateCampaign,
                Method::PATCH,
                format!("/api/campaigns/{c}"),
                Some((
                    "application/json",
                    json!({ "description": format!("soak note {}", rng.random::<u32>()) })
                        .to_string(),
                )),
                StatusCode::OK,
            ),
            (56..=65, Some(c)) => {
                let mut csv = String::from("email,first_name,company\n");
                for _ in 0..5 {
                    let n: u64 = rng.random();
                    csv.push_str(&format!("p{n:x}@soak.example,Pat,Acme {}\n", n % 97));
                }
                (
                    Op::ImportCsv,
                    Method::POST,
                    format!("/api/campaigns/{c}/prospects"),
                    Some(("text/csv", csv)),
                    StatusCode::OK,
                )
            }
            (66..=75, Some(c)) => (
                Op::ListProspects,
                Method::GET,
                format!("/api/campaigns/{c}/prospects?limit=20"),
                None,
                StatusCode::OK,
            ),
            (76..=79, Some(_)) if user.campaigns.len() > 3 => {
                let c = user.campaigns.remove(0);
                (
                    Op::ArchiveCampaign,
                    Method::PUT,
                    format!("/api/campaigns/{c}/archive"),
                    None,
                    StatusCode::OK,
                )
            }
            (76..=89, _) => (
                Op::InboxReplies,
                Method::GET,
                "/api/inbox/replies".to_owned(),
                None,
                StatusCode::OK,
            ),
            _ => (
                Op::InboxStats,
                Method::GET,
                "/api/inbox/stats".to_owned(),
                None,
                StatusCode::OK,
            ),
        };
        let reply = self
            .call(
                samples,
                op,
                method,
                &path,
                Some(&*user),
                &user.ip,
                body,
                None,
            )
            .await;
        self.expect(op, want, &reply);
    }
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

/// The koldly binary, serving on a free loopback port.
struct Koldly {
    child: tokio::process::Child,
    addr: SocketAddr,
    database: PathBuf,
    log: PathBuf,
}

impl Koldly {
    async fn start(redis_url: &str) -> Self {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let database = std::env::temp_dir().join(format!("koldly-soak-{unique}.db"));
        let log = std::env::temp_dir().join(format!("koldly-soak-{unique}.log"));
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        // KOLDLY_BIN: another build of the binary (a release build, say).
        let binary =
            std::env::var("KOLDLY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_koldly").into());
        let child = tokio::process::Command::new(binary)
            .env("DATABASE_URL", format!("sqlite:{}", database.display()))
            .env("BIND_ADDR", addr.to_string())
            .env("JWT_SECRET", "a jwt secret of at least thirty-two bytes")
            .env("REDIS_URL", redis_url)
            .env("TRUSTED_PROXIES", "127.0.0.1")
            .env("RUST_LOG", "warn")
            .env_remove("KOLDLY_ENV")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("koldly starts");
        let koldly = Koldly {
            child,
            addr,
            database,
            log,
        };
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let client: Client<HttpConnector, Full<Bytes>> =
                    Client::builder(TokioExecutor::new()).build_http();
                let request = Request::get(format!("http://{addr}/health"))
                    .body(Full::default())
                    .unwrap();
                if let Ok(response) = client.request(request).await
                    && response.status() == StatusCode::OK
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(
            ready.is_ok(),
            "koldly did not answer: {}",
            koldly.log_tail()
        );
        koldly
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("koldly is running")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log[log.len().saturating_sub(2000)..].to_owned()
    }
}

impl Drop for Koldly {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        for suffix in ["", "-wal", "-shm", "-jobs", "-jobs-wal", "-jobs-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.database.display()));
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// How many idempotency entries Redis holds.
async fn count_entries(redis: &mut redis::aio::MultiplexedConnection) -> usize {
    let mut cursor = 0u64;
    let mut count = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{ENTRY_PREFIX}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(redis)
            .await
            .unwrap();
        count += keys.len();
        if next == 0 {
            return count;
        }
        cursor = next;
    }
}

fn percentile(sorted: &[u64], p: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)] as f64 / 1000.0
}

async fn run(duration: Duration, warm_up: Duration, workers: usize) {
    let Some(redis_url) = common::service_url("REDIS_URL") else {
        return;
    };
    let mut redis_url = url::Url::parse(&redis_url).unwrap();
    redis_url.set_path(&format!("/{REDIS_DB}"));
    let redis_url = redis_url.to_string();
    let mut redis = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let entries_before = count_entries(&mut redis).await;

    let koldly = Koldly::start(&redis_url).await;
    let pid = koldly.pid();
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&format!("sqlite:{}", koldly.database.display()))
        .await
        .unwrap();
    let load = Arc::new(Load {
        client: Client::builder(TokioExecutor::new()).build_http(),
        addr: koldly.addr,
        db,
        next_ip: AtomicUsize::new(0),
        keys: Mutex::new(Vec::new()),
        unexpected: Mutex::new(Vec::new()),
    });

    // Every worker's first user arrives before the clock starts.
    let mut users = Vec::new();
    let mut setup = Vec::new();
    for worker in 0..workers {
        let user = load.arrive(&mut setup, worker).await;
        users.push(
            user.unwrap_or_else(|| {
                panic!("a user signs up: {:?}", load.unexpected.lock().unwrap())
            }),
        );
    }

    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let rss = tokio::spawn({
        let done = done.clone();
        async move {
            let mut samples = Vec::new();
            while !done.load(Ordering::Relaxed) {
                samples.push((started.elapsed(), rss_kib(pid)));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            samples
        }
    });
    let entries = tokio::spawn({
        let (done, load) = (done.clone(), load.clone());
        let mut redis = redis.clone();
        async move {
            // (entries stored, keys sent by the end of the count) every 2 s.
            let mut samples = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let stored = count_entries(&mut redis)
                    .await
                    .saturating_sub(entries_before);
                samples.push((stored, load.keys.lock().unwrap().len()));
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            samples
        }
    });
    let mut tasks = Vec::new();
    for (worker, mut user) in users.into_iter().enumerate() {
        let load = load.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(20 + worker as u64);
            let mut samples = Vec::new();
            while started.elapsed() < duration {
                load.step(&mut samples, &mut user, worker, &mut rng).await;
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let rss = rss.await.unwrap();
    let entry_counts = entries.await.unwrap();

    // Idempotency entries: every key sent stored once, with an expiry within
    // the retention; nothing more.
    let store = RedisStore::open(&redis_url).unwrap();
    let keys = load.keys.lock().unwrap().clone();
    let mut pipe = redis::pipe();
    for (scope, key) in &keys {
        let entry = EntryKey::new(scope, &IdempotencyKey::parse(key.as_bytes()).unwrap());
        pipe.cmd("PTTL").arg(store.redis_key(&entry));
    }
    let ttls: Vec<i64> = pipe.query_async(&mut redis).await.unwrap();
    let entries_after = count_entries(&mut redis).await;
    let stored = entries_after.saturating_sub(entries_before);

    // Latency, overall and per kind.
    let mut by_op: BTreeMap<Op, Vec<u64>> = BTreeMap::new();
    let mut all: Vec<u64> = samples.iter().map(|s| s.micros).collect();
    all.sort_unstable();
    for s in &samples {
        by_op.entry(s.op).or_default().push(s.micros);
    }
    let server_errors = samples
        .iter()
        .filter(|s| s.status.is_server_error())
        .count();
    let unexpected = load.unexpected.lock().unwrap().clone();

    // Memory: the lowest RSS of the first fifth after the warm-up against the
    // lowest of the last fifth. The lowest, because a login's 19 MiB argon2
    // buffer comes and goes within a fraction of a second (up to one per core
    // at once): memory the process keeps raises the floor, not just the peaks.
    let after: Vec<u64> = rss
        .iter()
        .filter(|(t, _)| *t > warm_up)
        .map(|s| s.1)
        .collect();
    let window = (after.len() / 5).max(5);
    assert!(
        after.len() >= 2 * window,
        "RSS sampled after the warm-up: {rss:?}"
    );
    let baseline = *after[..window].iter().min().unwrap();
    let end = *after[after.len() - window..].iter().min().unwrap();
    let highest = *after.iter().max().unwrap();
    let growth = end as f64 / baseline as f64 - 1.0;
    println!(
        "FIGURE soak: {:.0} s, {workers} workers, {} requests ({:.0}/s), 5xx {server_errors}, \
         unexpected {}, p50 {:.1} ms, p99 {:.1} ms; RSS after the {} s warm-up: lowest of the \
         first {window} s {:.1} MiB, of the last {window} s {:.1} MiB, growth {:+.1} % (bound \
         {:.0} %), highest {:.1} MiB; idempotency entries {stored} new for {} keys sent ({} \
         replays)",
        elapsed.as_secs_f64(),
        samples.len(),
        samples.len() as f64 / elapsed.as_secs_f64(),
        unexpected.len(),
        percentile(&all, 50),
        percentile(&all, 99),
        warm_up.as_secs(),
        baseline as f64 / 1024.0,
        end as f64 / 1024.0,
        growth * 100.0,
        RSS_GROWTH_BOUND * 100.0,
        highest as f64 / 1024.0,
        keys.len(),
        by_op.get(&Op::KeyedReplay).map_or(0, Vec::len),
    );
    for (op, mut micros) in by_op {
        micros.sort_unstable();
        println!(
            "FIGURE soak {op:?}: {} requests, p50 {:.1} ms, p99 {:.1} ms",
            micros.len(),
            percentile(&micros, 50),
            percentile(&micros, 99)
        );
    }
    let every = if elapsed > Duration::from_secs(120) {
        60
    } else {
        5
    };
    println!(
        "FIGURE soak RSS (MiB) every {every} s: {:?}",
        rss.iter()
            .step_by(every)
            .map(|(_, kib)| kib / 1024)
            .collect::<Vec<_>>()
    );
    assert_eq!(server_errors, 0, "5xx answers: {unexpected:?}");
    assert!(
        unexpected.is_empty(),
        "{} unexpected answers, first: {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(5)]
    );
    assert!(
        growth <= RSS_GROWTH_BOUND,
        "RSS grew {:.1} % after the warm-up: {rss:?}",
        growth * 100.0
    );
    for (stored, sent_after) in &entry_counts {
        assert!(
            stored <= sent_after,
            "{stored} entries stored for {sent_after} keys sent"
        );
    }
    assert!(
        stored <= keys.len(),
        "{stored} entries for {} keys",
        keys.len()
    );
    let retention = RETENTION.as_millis() as i64;
    assert!(
        ttls.iter().all(|&ttl| ttl > 0 && ttl <= retention),
        "every key's entry is stored with an expiry within the retention: {:?}",
        ttls.iter()
            .filter(|&&t| t <= 0 || t > retention)
            .take(5)
            .collect::<Vec<_>>()
    );
    assert!(samples.len() > workers * 20, "the soak did work");
}
