//! [`RedisStore`]: entries in Redis, shared by every instance of a service.

use std::{
    sync::{
        Arc, LazyLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::{
    Client, RedisError, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use tokio::sync::OnceCell;

use super::{
    Claim, Completion, Entry, EntryKey, Store, StoreError, StoreErrorKind,
    codec::{self, TOKEN_LEN},
};
use crate::idempotency::Fingerprint;

/// The default prefix of the keys the store writes.
const DEFAULT_PREFIX: &str = "steadfast:idempotency:";

/// Claims a free key, or returns the value that holds it and its remaining TTL.
/// A key whose lock TTL passed has expired in Redis, so it is free.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, '', 0}
end
return {0, current, redis.call('PTTL', KEYS[1])}
",
    )
});

/// Replaces a claim by the completed entry while no other request holds the
/// key: the lease still holds it, or its lock TTL passed and nobody took the key
/// over (the key has expired). A key holding anything else (a successor's claim,
/// a completed entry) is fenced off by the claim token.
static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] or not current then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
",
    )
});

/// Deletes a claim, if the lease still holds it.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// The value of a key and its remaining TTL, read together.
static LOOKUP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if not current then
  return {0, '', 0}
end
return {1, current, redis.call('PTTL', KEYS[1])}
",
    )
});

/// An idempotency store in Redis, for instances that share keys.
///
/// Each entry is one Redis string under `prefix + hex(SHA-256(scope, key))`:
///
/// - a **claim** is one atomic Lua script (`GET`, then `SET … PX lock_ttl` when
///   free): of any number of instances racing on a key, one wins. A claim whose
///   lock TTL passes simply expires in Redis, which is how the claim of a dead
///   process is taken over;
/// - a **completion** is one round trip: a script replaces the claim by the
///   stored response with `PX retention` while no other request holds the key:
///   this request's claim (a 16-byte token) still holds it, or the claim
///   expired and nobody took the key over;
/// - a **replay** is one round trip (the claim script returns the entry);
/// - a **release** is one round trip, again only for the claim's own token.
///
/// The connection is a [`ConnectionManager`], opened on first use (so a store
/// can be built while Redis is down) and reconnected in the background.
/// Failures are the layer's to handle: it bounds every call by its store
/// timeout and then fails closed (503) or open, as configured.
///
/// ```no_run
/// use steadfast::idempotency::{IdempotencyLayer, RedisStore};
///
/// let store = RedisStore::open("redis://127.0.0.1:6379/")?.prefix("orders-api:idem:");
/// let layer = IdempotencyLayer::new(store).scope(|parts: &http::request::Parts| {
///     parts.headers.get("x-client-id")?.to_str().ok().map(str::to_owned)
/// });
/// # let _ = layer;
/// # Ok::<(), redis::RedisError>(())
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Option<Client>,
    config: ConnectionManagerConfig,
    conn: OnceCell<ConnectionManager>,
    prefix: String,
    instance: u64,
    counter: AtomicU64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("connected", &self.inner.conn.initialized())
            .finish_non_exhaustive()
    }
}

/// The lease of a [`RedisStore`] claim: the exact value the claim wrote.
#[derive(Debug)]
pub struct RedisLease {
    value: Vec<u8>,
}

impl RedisStore {
    /// A store on `client`, connecting on first use. The connection gives up an
    /// attempt after 1 s and retries once; set your own with
    /// [`manager_config`](Self::manager_config).
    pub fn new(client: Client) -> Self {
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)));
        Self::build(Some(client), config, OnceCell::new())
    }

    /// A store on the Redis at `url` (`redis://host:port/db`), connecting on
    /// first use. Fails only when the URL is invalid.
    pub fn open(url: &str) -> Result<Self, RedisError> {
        Client::open(url).map(Self::new)
    }

    /// A store on a connection you already manage.
    pub fn from_manager(manager: ConnectionManager) -> Self {
        Self::build(
            None,
            ConnectionManagerConfig::new(),
            OnceCell::new_with(Some(manager)),
        )
    }

    fn build(
        client: Option<Client>,
        config: ConnectionManagerConfig,
        conn: OnceCell<ConnectionManager>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                config,
                conn,
                prefix: DEFAULT_PREFIX.to_owned(),
                instance: rand::random(),
                counter: AtomicU64::new(0),
            }),
        }
    }

    /// Applies a setting: in place before the store is shared, else on a copy
    /// (which keeps the connection).
    fn configure(mut self, set: impl FnOnce(&mut Inner)) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            set(inner);
            return self;
        }
        let old = &self.inner;
        let mut inner = Inner {
            client: old.client.clone(),
            config: old.config.clone(),
            conn: OnceCell::new_with(old.conn.get().cloned()),
            prefix: old.prefix.clone(),
            instance: old.instance,
            counter: AtomicU64::new(old.counter.load(Ordering::Relaxed)),
        };
        set(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The prefix of every key the store writes (default `steadfast:idempotency:`):
    /// give each service (or test run) its own.
    pub fn prefix(self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.configure(|inner| inner.prefix = prefix)
    }

    /// How the connection is made and kept (used when the store connects itself).
    pub fn manager_config(self, config: ConnectionManagerConfig) -> Self {
        self.configure(|inner| inner.config = config)
    }

    /// The half of every lease token that identifies this instance (default
    /// random): set it for reproducible tokens in tests.
    pub fn instance_id(self, id: u64) -> Self {
        self.configure(|inner| inner.instance = id)
    }

    /// The Redis key of an entry.
    pub fn redis_key(&self, key: &EntryKey) -> String {
        let mut k = String::with_capacity(self.inner.prefix.len() + 64);
        k.push_str(&self.inner.prefix);
        k.push_str(&key.to_hex());
        k
    }

    async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        let inner = &self.inner;
        inner
            .conn
            .get_or_try_init(|| async {
                let client = inner.client.clone().ok_or_else(|| {
                    StoreError::new(StoreErrorKind::Unavailable, "no Redis connection")
                })?;
                ConnectionManager::new_with_config(client, inner.config.clone())
                    .await
                    .map_err(unavailable)
            })
            .await
            .cloned()
    }

    fn token(&self) -> [u8; TOKEN_LEN] {
        let mut token = [0; TOKEN_LEN];
        token[..8].copy_from_slice(&self.inner.instance.to_be_bytes());
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        token[8..].copy_from_slice(&n.to_be_bytes());
        token
    }
}

fn unavailable(err: RedisError) -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, "Redis failed").with_source(err)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn ttl(pttl: i64) -> Duration {
    Duration::from_millis(u64::try_from(pttl).unwrap_or(0))
}

impl Store for RedisStore {
    type Lease = RedisLease;

    async fn claim(
        &self,
        key: &EntryKey,
        fingerprint: &Fingerprint,
        lock_ttl: Duration,
    ) -> Result<Claim<RedisLease>, StoreError> {
        let mut conn = self.conn().await?;
        let value = codec::in_flight(fingerprint, self.token());
        let (acquired, current, pttl): (i64, Vec<u8>, i64) = CLAIM
            .key(self.redis_key(key))
            .arg(&value)
            .arg(millis(lock_ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if acquired == 1 {
            return Ok(Claim::Acquired(RedisLease { value }));
        }
        codec::decode(&current, ttl(pttl)).map(Claim::Existing)
    }

    async fn complete(
        &self,
        key: &EntryKey,
        lease: &RedisLease,
        completion: Completion,
        retention: Duration,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let fingerprint = codec::decode(&lease.value, Duration::ZERO).and_then(|e| match e {
            Entry::InFlight { fingerprint, .. } => Ok(fingerprint),
            Entry::Completed { .. } => Err(StoreError::new(StoreErrorKind::Corrupt, "not a claim")),
        })?;
        let stored: i64 = COMPLETE
            .key(self.redis_key(key))
            .arg(&lease.value)
            .arg(codec::completed(&fingerprint, &completion))
            .arg(millis(retention))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if stored == 1 {
            Ok(())
        } else {
            Err(StoreError::lease_lost())
        }
    }

    async fn release(&self, key: &EntryKey, lease: &RedisLease) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let _: i64 = RELEASE
            .key(self.redis_key(key))
            .arg(&lease.value)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn lookup(&self, key: &EntryKey) -> Result<Option<Entry>, StoreError> {
        let mut conn = self.conn().await?;
        let (found, current, pttl): (i64, Vec<u8>, i64) = LOOKUP
            .key(self.redis_key(key))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if found == 0 {
            return Ok(None);
        }
        codec::decode(&current, ttl(pttl)).map(Some)
    }
}
