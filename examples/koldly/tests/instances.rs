//! Two koldly processes (the real binary) on one PostgreSQL and one Redis,
//! behind a round-robin client: concurrent duplicates of a keyed request run
//! once, the rate limits hold across both, and one instance killed with
//! SIGKILL mid-load loses nothing. That the sending queue sends every row
//! once with two processes is `tests/product/sending_providers.rs`
//! (`two_processes_on_one_postgres_send_every_row_exactly_once`).
//!
//! Each test prints a `FIGURE` line. Needs PostgreSQL and Redis (skipped with
//! a printed reason without them, failing under
//! `STEADFAST_REQUIRE_SERVICES=1`); bounded at about 30 s each.

mod support;

use std::{collections::BTreeMap, net::SocketAddr};

use bytes::Bytes;
use http_body_util::Full;
use support::{
    Backend, TestDb,
    common::try_send,
    keyed_load::{self, Load},
    process::{self, KoldlyProcess},
};

/// Two processes on one fresh database and `redis`, trusting the loopback
/// proxy's `X-Forwarded-For` (so a test can be a client of its own), whose
/// dead requests' keys free up after 2 s; and a pool on the database.
async fn two_instances(redis: &str) -> (TestDb, [KoldlyProcess; 2], sqlx::AnyPool) {
    let (db, url) = TestDb::create(Backend::Postgres).await;
    let command = || {
        let mut command = process::command(&url);
        command
            .env("REDIS_URL", redis)
            .env("TRUSTED_PROXIES", "127.0.0.1")
            .env("IDEMPOTENCY_LOCK_TTL_SECS", "2");
        command
    };
    // One after the other: the first migrates the database.
    let a = KoldlyProcess::start(command()).await;
    let b = KoldlyProcess::start(command()).await;
    let pool = sqlx::AnyPool::connect(&url).await.expect("test pool");
    (db, [a, b], pool)
}

/// 20 keys, each sent 6 times at once, alternating between the instances:
/// every key makes one campaign; its 201s all name that campaign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_across_two_instances_run_once() {
    let Some(redis) = process::postgres_and_redis() else {
        return;
    };
    let (_db, [a, b], pool) = two_instances(&redis).await;
    let account = keyed_load::account(a.addr, &pool, "dupes@example.com").await;
    let (keys, copies) = (20, 6);
    let mut requests = tokio::task::JoinSet::new();
    for copy in 0..copies {
        for n in 0..keys {
            let addr = if (n + copy) % 2 == 0 { a.addr } else { b.addr };
            let account = account.clone();
            requests.spawn(async move {
                let reply = keyed_load::create(addr, &account, n)
                    .await
                    .expect("the instance answers");
                (n, reply)
            });
        }
    }
    let (mut ran, mut replayed, mut conflicts) = (0, 0, 0);
    let mut ids: BTreeMap<usize, String> = BTreeMap::new();
    while let Some(done) = requests.join_next().await {
        let (n, reply) = done.unwrap();
        match reply.status.as_u16() {
            201 => {
                let id = reply.json()["id"].as_str().unwrap().to_owned();
                assert_eq!(ids.entry(n).or_insert_with(|| id.clone()), &id, "key-{n}");
                if reply.headers.contains_key("idempotent-replayed") {
                    replayed += 1;
                } else {
                    ran += 1;
                }
            }
            409 => conflicts += 1,
            other => panic!("key-{n}: {other} {}", String::from_utf8_lossy(&reply.body)),
        }
    }
    let (per_name, rows) = keyed_load::campaigns(&pool, &account).await;
    assert_eq!(ran, keys, "each key's handler ran once");
    assert_eq!(per_name.len(), keys);
    assert!(per_name.values().all(|n| *n == 1), "{per_name:?}");
    assert_eq!(rows.len(), keys);
    println!(
        "FIGURE two_instances_duplicates: requests={} keys={keys} handler_runs={ran} \
         replayed={replayed} conflicts_409={conflicts} rows={} duplicated=0",
        keys * copies,
        rows.len()
    );
}

/// A request from `client` (as the trusted loopback proxy forwards it).
async fn from_client(addr: SocketAddr, path: &str, client: &str, body: &str) -> u16 {
    try_send(
        http::Request::post(format!("http://{addr}{path}"))
            .header("content-type", "application/json")
            .header("x-forwarded-for", client)
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .unwrap(),
    )
    .await
    .expect("the instance answers")
    .status
    .as_u16()
}

/// Sends `count` requests at once from one client, alternating instances;
/// returns (accepted, refused with 429).
async fn burst(
    instances: [SocketAddr; 2],
    path: &'static str,
    client: &str,
    body: &'static str,
    count: usize,
) -> (usize, usize) {
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..count {
        let (addr, client) = (instances[i % 2], client.to_owned());
        requests.spawn(async move { from_client(addr, path, &client, body).await });
    }
    let (mut accepted, mut refused) = (0, 0);
    while let Some(status) = requests.join_next().await {
        match status.unwrap() {
            429 => refused += 1,
            other => {
                assert!(other < 500, "{path}: {other}");
                accepted += 1;
            }
        }
    }
    (accepted, refused)
}

/// 20 logins (5 per 15 minutes allowed) and 20 forgot-password requests (3
/// per hour) from one client at once, split across the two instances: the
/// client gets exactly its budget, not one per instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_hold_across_two_instances() {
    let Some(redis) = process::postgres_and_redis() else {
        return;
    };
    let (_db, [a, b], _pool) = two_instances(&redis).await;
    // A /64 of its own per run: Redis outlives the test.
    let block = uuid::Uuid::new_v4().as_u128() as u16;
    let client = format!("2001:db8:{block:x}:2::1");
    let instances = [a.addr, b.addr];
    let login = r#"{"email":"nobody@example.com","password":"not a password 1"}"#;
    let (logins, logins_refused) = burst(instances, "/api/auth/login", &client, login, 20).await;
    let forgot = r#"{"email":"nobody@example.com"}"#;
    let (resets, resets_refused) =
        burst(instances, "/api/auth/forgot-password", &client, forgot, 20).await;
    assert_eq!((logins, logins_refused), (5, 15), "login: 5 per 15 minutes");
    assert_eq!(
        (resets, resets_refused),
        (3, 17),
        "forgot-password: 3 per hour"
    );
    println!(
        "FIGURE two_instances_rate_limits: login 20 sent, {logins} accepted (limit 5), \
         {logins_refused} refused 429; forgot-password 20 sent, {resets} accepted (limit 3), \
         {resets_refused} refused 429"
    );
}

/// 200 keyed creates round-robin over both instances, 16 at a time; one
/// instance SIGKILLed once 60 are acknowledged; the client retries every key
/// on the survivor: every acknowledged campaign is there, every key made one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_mid_load_loses_nothing() {
    let Some(redis) = process::postgres_and_redis() else {
        return;
    };
    let (_db, [mut doomed, survivor], pool) = two_instances(&redis).await;
    let account = keyed_load::account(survivor.addr, &pool, "fleet@example.com").await;
    let load = Load::start(vec![doomed.addr, survivor.addr], &account, 200, 16);
    load.until_acked(60).await;
    doomed.kill().await;
    let acked_at_kill = load.acked.load(std::sync::atomic::Ordering::SeqCst);
    let outcomes = load.outcomes().await;
    let acked = outcomes.values().flatten().count();
    let (_, before) = keyed_load::campaigns(&pool, &account).await;
    let retries = keyed_load::retry_all(survivor.addr, &account, &outcomes).await;
    let (lost, duplicated) =
        keyed_load::check_exactly_once(&pool, &account, &outcomes, &retries).await;
    let committed = keyed_load::committed_unacknowledged(&outcomes, &retries, &before);
    println!(
        "FIGURE two_instances_kill: keys={} acked_at_kill={acked_at_kill} acked={acked} unacknowledged={} \
         committed_unacknowledged={committed} retries_replayed={} retries_ran={} conflicts_409={} \
         lost={lost} duplicated={duplicated}",
        outcomes.len(),
        outcomes.len() - acked,
        retries.replayed,
        retries.ran,
        retries.conflicts
    );
}
