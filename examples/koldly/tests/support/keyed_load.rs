//! A client of real koldly processes for the kill and instance tests: signs a
//! user up, creates campaigns with an `Idempotency-Key` each (round-robin over
//! the instances it is given), remembers which creates were acknowledged
//! (2xx, with the campaign's id), and retries the others until they land.
//! Campaign `n` is named `load n` under key `key-n`, so the database shows
//! how often each key ran.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::Semaphore;

use super::{Reply, common::try_send};

/// A user of the processes.
#[derive(Clone)]
pub struct Account {
    pub token: String,
    pub id: String,
}

/// Signs `email` up on `addr` and moves the account to the plan without a
/// campaign limit (through `pool`, as the product tests do).
pub async fn account(addr: SocketAddr, pool: &sqlx::AnyPool, email: &str) -> Account {
    let body = serde_json::json!({"email": email, "password": "correct horse 42", "name": "Load"});
    let reply = try_send(
        http::Request::post(format!("http://{addr}/api/auth/signup"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap(),
    )
    .await
    .expect("signup");
    assert_eq!(reply.status, 201, "signup: {:?}", reply.body);
    let json = reply.json();
    let account = Account {
        token: json["token"].as_str().unwrap().to_owned(),
        id: json["user"]["id"].as_str().unwrap().to_owned(),
    };
    sqlx::query("UPDATE users SET subscription_plan = 'scale' WHERE id = $1")
        .bind(&account.id)
        .execute(pool)
        .await
        .unwrap();
    account
}

/// `POST /api/campaigns` of campaign `n` under its key.
pub async fn create(
    addr: SocketAddr,
    account: &Account,
    n: usize,
) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>> {
    let body = serde_json::json!({ "name": format!("load {n}") });
    try_send(
        http::Request::post(format!("http://{addr}/api/campaigns"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", account.token))
            .header("idempotency-key", format!("key-{n}"))
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap(),
    )
    .await
}

/// The campaign id of an acknowledged create.
fn acknowledged(reply: &Reply) -> Option<String> {
    (reply.status == 201).then(|| reply.json()["id"].as_str().unwrap().to_owned())
}

/// A load of keyed creates in flight.
pub struct Load {
    /// Creates acknowledged so far.
    pub acked: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<BTreeMap<usize, Option<String>>>,
}

impl Load {
    /// Creates campaigns `0..n`, `concurrency` at a time, campaign `i` on
    /// `addrs[i % addrs.len()]`; each request is tried once.
    pub fn start(addrs: Vec<SocketAddr>, account: &Account, n: usize, concurrency: usize) -> Self {
        let acked = Arc::new(AtomicUsize::new(0));
        let (counter, account) = (acked.clone(), account.clone());
        let task = tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(concurrency));
            let mut requests = tokio::task::JoinSet::new();
            for i in 0..n {
                let permit = permits.clone().acquire_owned().await.unwrap();
                let (addr, account, counter) =
                    (addrs[i % addrs.len()], account.clone(), counter.clone());
                requests.spawn(async move {
                    let outcome = create(addr, &account, i).await;
                    drop(permit);
                    let id = outcome.ok().as_ref().and_then(acknowledged);
                    if id.is_some() {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    (i, id)
                });
            }
            let mut outcomes = BTreeMap::new();
            while let Some(done) = requests.join_next().await {
                let (i, id) = done.unwrap();
                outcomes.insert(i, id);
            }
            outcomes
        });
        Self { acked, task }
    }

    /// Waits until `count` creates were acknowledged (bounded: 60 s).
    pub async fn until_acked(&self, count: usize) {
        super::process::wait_for("acknowledged creates", async || {
            self.acked.load(Ordering::SeqCst) >= count
        })
        .await;
    }

    /// Every create's acknowledged campaign id (`None`: not acknowledged).
    pub async fn outcomes(self) -> BTreeMap<usize, Option<String>> {
        self.task.await.unwrap()
    }
}

/// How the retries of a load went.
#[derive(Debug, Default)]
pub struct Retries {
    /// Keys whose retry replayed a stored answer.
    pub replayed: usize,
    /// Keys whose retry ran the handler (the first run that completed).
    pub ran: usize,
    /// 409 answers (the key still claimed by a request that died).
    pub conflicts: usize,
    /// The campaign id each key ended with.
    pub ids: BTreeMap<usize, String>,
}

/// Retries every create of `outcomes` on `addr` until it is answered 201
/// (a 409 — the key still claimed by the dead process until its lock TTL —
/// is polled every 50 ms, for 30 s at most); an acknowledged create must
/// replay its own campaign.
pub async fn retry_all(
    addr: SocketAddr,
    account: &Account,
    outcomes: &BTreeMap<usize, Option<String>>,
) -> Retries {
    let mut retries = Retries::default();
    for (&n, acked) in outcomes {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let reply = loop {
            let reply = create(addr, account, n)
                .await
                .expect("the instance answers");
            if reply.status != 409 {
                break reply;
            }
            retries.conflicts += 1;
            assert!(
                tokio::time::Instant::now() < deadline,
                "key-{n} still claimed after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let id = acknowledged(&reply).unwrap_or_else(|| {
            panic!(
                "key-{n}: {} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            )
        });
        let replayed = reply.headers.get("idempotent-replayed").is_some();
        if let Some(acked) = acked {
            assert!(replayed, "key-{n} was acknowledged: its retry replays");
            assert_eq!(&id, acked, "key-{n} replays its own campaign");
        }
        if replayed {
            retries.replayed += 1;
        } else {
            retries.ran += 1;
        }
        retries.ids.insert(n, id);
    }
    retries
}

/// The account's campaigns: how many rows each `load n` name has, and every id.
pub async fn campaigns(
    pool: &sqlx::AnyPool,
    account: &Account,
) -> (BTreeMap<String, i64>, BTreeSet<String>) {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT id, name FROM campaigns WHERE user_id = $1")
            .bind(&account.id)
            .fetch_all(pool)
            .await
            .unwrap();
    let mut per_name = BTreeMap::new();
    for (_, name) in &rows {
        *per_name.entry(name.clone()).or_insert(0) += 1;
    }
    (per_name, rows.into_iter().map(|(id, _)| id).collect())
}

/// How many creates that were not acknowledged had committed their row
/// anyway (`before`: the account's campaigns before the retries): the
/// process died after the commit, before its answer left.
pub fn committed_unacknowledged(
    outcomes: &BTreeMap<usize, Option<String>>,
    retries: &Retries,
    before: &BTreeSet<String>,
) -> usize {
    outcomes
        .iter()
        .filter(|(n, acked)| acked.is_none() && before.contains(&retries.ids[n]))
        .count()
}

/// Checks what must hold after a load, a kill and the retries: every
/// acknowledged campaign is in the database, every key made exactly one row,
/// and the rows are the ones the retries named. Returns (lost, duplicated).
pub async fn check_exactly_once(
    pool: &sqlx::AnyPool,
    account: &Account,
    outcomes: &BTreeMap<usize, Option<String>>,
    retries: &Retries,
) -> (usize, usize) {
    let (per_name, ids) = campaigns(pool, account).await;
    let lost = outcomes
        .values()
        .flatten()
        .filter(|id| !ids.contains(*id))
        .count();
    let duplicated = per_name.values().filter(|n| **n > 1).count();
    assert_eq!(lost, 0, "acknowledged creates missing from the database");
    assert_eq!(
        duplicated, 0,
        "keys that made more than one row: {per_name:?}"
    );
    assert_eq!(per_name.len(), outcomes.len(), "every key made its row");
    let named: BTreeSet<String> = retries.ids.values().cloned().collect();
    assert_eq!(named, ids, "the rows are the ones the answers named");
    (lost, duplicated)
}
