//! Where claims and stored responses live: the [`Store`] trait, [`MemoryStore`]
//! for one process and, with the `redis` feature, `RedisStore` for a fleet.

#[cfg(feature = "redis")]
mod codec;
#[cfg(feature = "memory-store")]
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod types;

use std::{future::Future, time::Duration};

use tokio::time::Instant;

#[cfg(feature = "memory-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory-store")))]
pub use memory::{MemoryLease, MemoryStore};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{RedisLease, RedisStore};
pub use types::{Claim, Completion, Entry, EntryKey, StoreError, StoreErrorKind, StoredResponse};

use super::fingerprint::Fingerprint;

/// Storage for idempotency entries, shared by every instance that must see the
/// same keys.
///
/// An entry is either *in flight* (claimed by the request that is running the
/// handler, until its lock TTL passes) or *completed* (its response stored until
/// the retention period passes). Implement it to keep entries in your own
/// database; [`MemoryStore`] and `RedisStore` are the two that ship.
///
/// # Contract
///
/// - [`claim`](Store::claim) is atomic: of any number of concurrent claims of a
///   free key, exactly one gets [`Claim::Acquired`]. A key is free when it has no
///   entry, its completed entry has expired, or its in-flight lock TTL has passed
///   (another process died holding it).
/// - [`complete`](Store::complete) stores the response while no other request
///   holds the key: the lease still holds the claim, or its lock TTL passed and
///   nobody took the key over (the handler outlived its lock; its response is
///   still the one and only run, so it is kept and replayed). When another
///   request holds the key (a successor's claim, or a completed entry), it fails
///   with [`StoreErrorKind::LeaseLost`] and changes nothing: the claim token
///   fences a late completion off from its successor.
/// - [`release`](Store::release) frees the key only while the lease still holds
///   the claim; otherwise it does nothing.
/// - [`lookup`](Store::lookup) reports a free key as `None`.
///
/// # Futures
///
/// The methods return `impl Future + Send`, so an implementation writes plain
/// `async fn`s and nothing is boxed per call. The layer itself boxes the whole
/// keyed path of a request once (a keyed request buffers its body and goes to the
/// store anyway); requests without a key never touch the store and allocate nothing.
/// Every call the layer makes is bounded by its
/// [`store_timeout`](super::IdempotencyLayer::store_timeout), so a store
/// needs no timeout of its own.
pub trait Store: Clone + Send + Sync + 'static {
    /// Proof that a request holds the claim on a key, handed back to complete or
    /// release it.
    type Lease: Send + Sync + 'static;

    /// Claims `key` for a request with `fingerprint`, unless it is taken: then the
    /// entry that holds it is returned. The claim lasts `lock_ttl` at most.
    fn claim(
        &self,
        key: &EntryKey,
        fingerprint: &Fingerprint,
        lock_ttl: Duration,
    ) -> impl Future<Output = Result<Claim<Self::Lease>, StoreError>> + Send;

    /// Stores the outcome of a claimed request for `retention`; duplicates are
    /// answered from it from now on.
    fn complete(
        &self,
        key: &EntryKey,
        lease: &Self::Lease,
        completion: Completion,
        retention: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Gives a claim up, so that the next request with the key runs again.
    fn release(
        &self,
        key: &EntryKey,
        lease: &Self::Lease,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The live entry of `key`, if any.
    fn lookup(
        &self,
        key: &EntryKey,
    ) -> impl Future<Output = Result<Option<Entry>, StoreError>> + Send;

    /// Waits until `key` is no longer in flight, or until `until`: returns what
    /// [`lookup`](Store::lookup) then returns.
    ///
    /// The default polls `lookup`, from every 10 ms up to every 200 ms;
    /// [`MemoryStore`] is woken at once instead.
    fn wait(
        &self,
        key: &EntryKey,
        until: Instant,
    ) -> impl Future<Output = Result<Option<Entry>, StoreError>> + Send {
        async move {
            let mut interval = Duration::from_millis(10);
            loop {
                let entry = self.lookup(key).await?;
                let now = Instant::now();
                if !matches!(entry, Some(Entry::InFlight { .. })) || now >= until {
                    return Ok(entry);
                }
                tokio::time::sleep_until((now + interval).min(until)).await;
                interval = (interval * 2).min(Duration::from_millis(200));
            }
        }
    }

    /// Releases a claim from a destructor — the request future was dropped or its
    /// handler panicked — where nothing can be awaited.
    ///
    /// The default spawns [`release`](Store::release), bounded by `timeout`, on the
    /// current tokio runtime. [`MemoryStore`] releases synchronously instead.
    fn release_detached(&self, key: EntryKey, lease: Self::Lease, timeout: Duration) {
        let store = self.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                match tokio::time::timeout(timeout, store.release(&key, &lease)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => {
                        super::flow::count_store_error("release");
                        tracing::warn!(
                            error = %crate::classify::error_chain(&err),
                            "idempotency: releasing a dropped claim failed; its lock TTL will free it"
                        )
                    }
                    Err(_) => {
                        super::flow::count_store_error("release");
                        tracing::warn!("idempotency: releasing a dropped claim timed out; its lock TTL will free it")
                    }
                }
            });
        }
    }
}
