//! [`MemoryStore`]: entries in this process, on a moka cache bounded by bytes.

use std::{
    future::ready,
    pin::pin,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

use moka::{Expiry, future::Cache, ops::compute::Op};
use tokio::{sync::Notify, time::Instant};

use super::{Claim, Completion, Entry, EntryKey, Store, StoreError};
use crate::idempotency::Fingerprint;

/// The default bound on the bytes a [`MemoryStore`] keeps: 64 MiB.
const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Lease tokens, unique within the process.
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

/// What an entry weighs besides its response.
const SLOT_OVERHEAD: u32 = 256;

/// An idempotency store in this process's memory, for a single instance.
///
/// Entries live in a [moka](https://docs.rs/moka) cache bounded by their total
/// size in bytes (a stored response weighs its body and headers), so a burst of
/// large responses evicts old entries instead of exhausting memory. There is no
/// global lock: a claim locks only its own key's entry, briefly and never across
/// an `.await`. Lock TTLs and retention are checked against tokio's clock, so
/// tests with paused time see them pass; moka's own expiry (on the real clock)
/// only reclaims the memory afterwards.
///
/// Size the bound for your traffic, well above the layer's response limit: when
/// the cache is full, moka evicts entries (and its admission policy may decline
/// new ones), and a forgotten key runs again if retried. Clones share the same
/// entries.
/// For several instances behind a load balancer, use `RedisStore` (feature `redis`).
///
/// ```
/// use steadfast::idempotency::MemoryStore;
///
/// let store = MemoryStore::with_max_bytes(16 * 1024 * 1024);
/// # let _ = store;
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    cache: Cache<EntryKey, Arc<Slot>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.cache.entry_count())
            .field("weighted_size", &self.cache.weighted_size())
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store that keeps at most 64 MiB of entries.
    pub fn new() -> Self {
        Self::with_max_bytes(DEFAULT_MAX_BYTES)
    }

    /// A store that keeps at most `max_bytes` of entries.
    pub fn with_max_bytes(max_bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_key, slot: &Arc<Slot>| slot.weight.load(Ordering::Relaxed))
            .expire_after(SlotExpiry)
            .build();
        Self { cache }
    }

    /// The number of entries (approximate until moka's pending work has run).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }
}

/// The lease of a [`MemoryStore`] claim.
#[derive(Debug)]
pub struct MemoryLease {
    slot: Arc<Slot>,
    token: u64,
    /// The claimed request's fingerprint: kept for a completion after the lock
    /// TTL passed, when the slot may no longer hold the claim.
    fingerprint: Fingerprint,
}

/// One key's entry. Its state is behind its own mutex; waiters are woken through
/// `notify` when it leaves the in-flight state.
#[derive(Debug)]
struct Slot {
    state: Mutex<State>,
    notify: Notify,
    /// Bytes, for moka's weigher; set before every (re)insertion.
    weight: AtomicU32,
    /// Nanoseconds until moka may drop the entry; set before every (re)insertion.
    ttl: AtomicU64,
}

#[derive(Debug)]
enum State {
    Vacant,
    InFlight {
        fingerprint: Fingerprint,
        token: u64,
        lock_expires_at: Instant,
    },
    Completed {
        fingerprint: Fingerprint,
        completion: Completion,
        expires_at: Instant,
    },
}

impl Slot {
    fn new(ttl: Duration) -> Self {
        Self {
            state: Mutex::new(State::Vacant),
            notify: Notify::new(),
            weight: AtomicU32::new(SLOT_OVERHEAD),
            ttl: AtomicU64::new(nanos(ttl)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock; recover rather than propagate.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Frees the claim if `token` still holds it.
    fn release(&self, token: u64) {
        let mut state = self.lock();
        if matches!(&*state, State::InFlight { token: t, .. } if *t == token) {
            *state = State::Vacant;
            drop(state);
            self.notify.notify_waiters();
        }
    }
}

/// The live entry in `state` at `now`; `None` for a free key.
fn snapshot(state: &State, now: Instant) -> Option<Entry> {
    match state {
        State::InFlight {
            fingerprint,
            lock_expires_at,
            ..
        } if *lock_expires_at > now => Some(Entry::InFlight {
            fingerprint: *fingerprint,
            lock_expires_in: *lock_expires_at - now,
        }),
        State::Completed {
            fingerprint,
            completion,
            expires_at,
        } if *expires_at > now => Some(Entry::Completed {
            fingerprint: *fingerprint,
            completion: completion.clone(),
        }),
        _ => None,
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// moka expires each entry after the TTL its slot carries.
struct SlotExpiry;

impl Expiry<EntryKey, Arc<Slot>> for SlotExpiry {
    fn expire_after_create(
        &self,
        _key: &EntryKey,
        slot: &Arc<Slot>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(Duration::from_nanos(slot.ttl.load(Ordering::Relaxed)))
    }

    fn expire_after_update(
        &self,
        _key: &EntryKey,
        slot: &Arc<Slot>,
        _updated_at: std::time::Instant,
        _remaining: Option<Duration>,
    ) -> Option<Duration> {
        Some(Duration::from_nanos(slot.ttl.load(Ordering::Relaxed)))
    }
}

impl Store for MemoryStore {
    type Lease = MemoryLease;

    async fn claim(
        &self,
        key: &EntryKey,
        fingerprint: &Fingerprint,
        lock_ttl: Duration,
    ) -> Result<Claim<MemoryLease>, StoreError> {
        // Concurrent first claims of a key are coalesced by moka into one slot.
        let slot = self
            .cache
            .get_with(*key, async { Arc::new(Slot::new(lock_ttl)) })
            .await;
        let now = Instant::now();
        let mut state = slot.lock();
        if let Some(entry) = snapshot(&state, now) {
            return Ok(Claim::Existing(entry));
        }
        // Free: never used, released, expired, or its owner's lock TTL passed.
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        *state = State::InFlight {
            fingerprint: *fingerprint,
            token,
            lock_expires_at: now + lock_ttl,
        };
        drop(state);
        Ok(Claim::Acquired(MemoryLease {
            slot,
            token,
            fingerprint: *fingerprint,
        }))
    }

    async fn complete(
        &self,
        key: &EntryKey,
        lease: &MemoryLease,
        completion: Completion,
        retention: Duration,
    ) -> Result<(), StoreError> {
        let weight = match &completion {
            Completion::Response(res) => res.weight(),
            Completion::NotStored { .. } => 0,
        };
        let slot = &lease.slot;
        let mut outcome = Err(StoreError::lease_lost());
        // One step per key in moka: the completion is stored, and the entry
        // re-inserted so moka re-weighs it and extends its expiry, only while no
        // other request holds the key.
        self.cache
            .entry(*key)
            .and_compute_with(|current| {
                let now = Instant::now();
                // A slot that replaced ours (ours was evicted) holds the key if it is live.
                if let Some(entry) = &current
                    && !Arc::ptr_eq(entry.value(), slot)
                    && snapshot(&entry.value().lock(), now).is_some()
                {
                    return ready(Op::Nop);
                }
                {
                    let mut state = slot.lock();
                    // This lease's claim (even past its lock TTL), or nothing live
                    // at all (the lock TTL passed and nobody took over); another
                    // live claim or a completed entry is fenced off by the token.
                    let ours =
                        matches!(&*state, State::InFlight { token, .. } if *token == lease.token);
                    if !ours && snapshot(&state, now).is_some() {
                        return ready(Op::Nop);
                    }
                    *state = State::Completed {
                        fingerprint: lease.fingerprint,
                        completion,
                        expires_at: now + retention,
                    };
                }
                slot.weight.store(
                    u32::try_from(weight)
                        .unwrap_or(u32::MAX)
                        .saturating_add(SLOT_OVERHEAD),
                    Ordering::Relaxed,
                );
                slot.ttl.store(nanos(retention), Ordering::Relaxed);
                outcome = Ok(());
                ready(Op::Put(slot.clone()))
            })
            .await;
        if outcome.is_ok() {
            slot.notify.notify_waiters();
        }
        outcome
    }

    async fn release(&self, _key: &EntryKey, lease: &MemoryLease) -> Result<(), StoreError> {
        lease.slot.release(lease.token);
        Ok(())
    }

    async fn lookup(&self, key: &EntryKey) -> Result<Option<Entry>, StoreError> {
        let Some(slot) = self.cache.get(key).await else {
            return Ok(None);
        };
        let state = slot.lock();
        Ok(snapshot(&state, Instant::now()))
    }

    async fn wait(&self, key: &EntryKey, until: Instant) -> Result<Option<Entry>, StoreError> {
        let Some(slot) = self.cache.get(key).await else {
            return Ok(None);
        };
        loop {
            // Register for the wake-up before looking, so none is missed.
            let mut notified = pin!(slot.notify.notified());
            notified.as_mut().enable();
            let now = Instant::now();
            let entry = snapshot(&slot.lock(), now);
            let wake_at = match &entry {
                Some(Entry::InFlight {
                    lock_expires_in, ..
                }) if now < until => until.min(now + *lock_expires_in),
                _ => return Ok(entry),
            };
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(wake_at) => {}
            }
        }
    }

    fn release_detached(&self, _key: EntryKey, lease: MemoryLease, _timeout: Duration) {
        lease.slot.release(lease.token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idempotency::{IdempotencyKey, StoredResponse};
    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};

    fn key(k: &str) -> EntryKey {
        EntryKey::new("s", &IdempotencyKey::parse(k.as_bytes()).unwrap())
    }

    const FP: Fingerprint = Fingerprint::from_bytes([7; 32]);
    const TTL: Duration = Duration::from_secs(60);

    fn done(body: &'static str) -> Completion {
        Completion::Response(StoredResponse {
            status: StatusCode::CREATED,
            headers: HeaderMap::new(),
            body: Bytes::from_static(body.as_bytes()),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn claim_complete_lookup_and_expire() {
        let store = MemoryStore::new();
        let k = key("a");
        let Claim::Acquired(lease) = store.claim(&k, &FP, TTL).await.unwrap() else {
            panic!("first claim must succeed")
        };
        assert!(matches!(
            store.claim(&k, &FP, TTL).await.unwrap(),
            Claim::Existing(Entry::InFlight { lock_expires_in, .. }) if lock_expires_in == TTL
        ));
        store
            .complete(&k, &lease, done("x"), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(
            store.lookup(&k).await.unwrap(),
            Some(Entry::Completed {
                fingerprint: FP,
                completion: done("x")
            })
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(store.lookup(&k).await.unwrap(), None);
        assert!(matches!(
            store.claim(&k, &FP, TTL).await.unwrap(),
            Claim::Acquired(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn stale_lease_cannot_complete_or_release_a_takeover() {
        let store = MemoryStore::new();
        let k = key("a");
        let Claim::Acquired(old) = store.claim(&k, &FP, TTL).await.unwrap() else {
            panic!()
        };
        tokio::time::advance(TTL).await;
        let Claim::Acquired(new) = store.claim(&k, &FP, TTL).await.unwrap() else {
            panic!("lock TTL passed: takeover")
        };
        store.release(&k, &old).await.unwrap();
        assert!(matches!(
            store.lookup(&k).await.unwrap(),
            Some(Entry::InFlight { .. })
        ));
        let err = store
            .complete(&k, &old, done("old"), TTL)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), super::super::StoreErrorKind::LeaseLost);
        store.complete(&k, &new, done("new"), TTL).await.unwrap();
        assert!(matches!(
            store.lookup(&k).await.unwrap(),
            Some(Entry::Completed { completion, .. }) if completion == done("new")
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn wait_wakes_on_release_and_on_completion() {
        let store = MemoryStore::new();
        let k = key("a");
        let Claim::Acquired(lease) = store.claim(&k, &FP, TTL).await.unwrap() else {
            panic!()
        };
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .wait(&k, Instant::now() + Duration::from_secs(5))
                    .await
            })
        };
        tokio::task::yield_now().await;
        store.release_detached(k, lease, TTL);
        let started = Instant::now();
        assert_eq!(waiter.await.unwrap().unwrap(), None);
        assert_eq!(started.elapsed(), Duration::ZERO, "woken, not timed out");

        let Claim::Acquired(lease) = store.claim(&k, &FP, TTL).await.unwrap() else {
            panic!()
        };
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .wait(&k, Instant::now() + Duration::from_secs(5))
                    .await
            })
        };
        tokio::task::yield_now().await;
        store.complete(&k, &lease, done("x"), TTL).await.unwrap();
        assert_eq!(
            waiter.await.unwrap().unwrap(),
            Some(Entry::Completed {
                fingerprint: FP,
                completion: done("x")
            })
        );
        assert_eq!(started.elapsed(), Duration::ZERO, "woken, not timed out");
    }

    #[tokio::test(start_paused = true)]
    async fn wait_gives_up_at_its_deadline_and_wakes_at_lock_expiry() {
        let store = MemoryStore::new();
        let k = key("a");
        let _lease = store.claim(&k, &FP, TTL).await.unwrap();
        let started = Instant::now();
        let entry = store
            .wait(&k, started + Duration::from_secs(2))
            .await
            .unwrap();
        assert!(matches!(entry, Some(Entry::InFlight { .. })));
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        // A waiter with a longer bound is woken when the lock TTL passes: the key is free.
        let entry = store
            .wait(&k, started + Duration::from_secs(600))
            .await
            .unwrap();
        assert_eq!(entry, None);
        assert_eq!(started.elapsed(), TTL);
    }
}
