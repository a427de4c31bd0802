//! [`ClaimGuard`]: a claim that is released whatever happens to the request.

use std::time::Duration;

use super::flow::count_store_error;
use super::store::{Completion, EntryKey, Store, StoreErrorKind};
use crate::classify::error_chain;

/// Holds a claim while the handler runs. Completing or releasing it consumes the
/// guard; dropping it — the request future was dropped (client gone, timeout) or
/// the handler panicked — releases the claim at once through
/// [`Store::release_detached`], so the next retry runs instead of waiting for the
/// lock TTL.
pub(crate) struct ClaimGuard<'a, St: Store> {
    store: &'a St,
    key: EntryKey,
    lease: Option<St::Lease>,
    timeout: Duration,
}

impl<'a, St: Store> ClaimGuard<'a, St> {
    pub(crate) fn new(store: &'a St, key: EntryKey, lease: St::Lease, timeout: Duration) -> Self {
        Self {
            store,
            key,
            lease: Some(lease),
            timeout,
        }
    }

    /// Releases the claim so that a retry runs again. A failure is logged: the
    /// lock TTL frees the key then.
    pub(crate) async fn release(mut self) {
        let Some(lease) = &self.lease else { return };
        let outcome =
            tokio::time::timeout(self.timeout, self.store.release(&self.key, lease)).await;
        // Attempted: from here on, dropping the guard does nothing more.
        self.lease = None;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                count_store_error("release");
                tracing::warn!(key = ?self.key, error = %error_chain(&err), "idempotency: releasing a claim failed; its lock TTL will free the key")
            }
            Err(_) => {
                count_store_error("release");
                tracing::warn!(key = ?self.key, "idempotency: releasing a claim timed out; its lock TTL will free the key")
            }
        }
    }

    /// Stores the outcome. On failure the claim is left to its lock TTL rather
    /// than released: the handler ran, and releasing would let a retry run it again.
    pub(crate) async fn complete(mut self, completion: Completion, retention: Duration) {
        let Some(lease) = &self.lease else { return };
        let outcome = tokio::time::timeout(
            self.timeout,
            self.store.complete(&self.key, lease, completion, retention),
        )
        .await;
        self.lease = None;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(err)) if err.kind() == StoreErrorKind::LeaseLost => tracing::warn!(
                key = ?self.key,
                "idempotency: the handler outlived the lock TTL and another request took the key over; this response is not stored"
            ),
            Ok(Err(err)) => {
                count_store_error("complete");
                tracing::error!(key = ?self.key, error = %error_chain(&err), "idempotency: storing a response failed; the key stays claimed until its lock TTL")
            }
            Err(_) => {
                count_store_error("complete");
                tracing::error!(key = ?self.key, "idempotency: storing a response timed out; the key stays claimed until its lock TTL")
            }
        }
    }
}

impl<St: Store> Drop for ClaimGuard<'_, St> {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            tracing::debug!(key = ?self.key, "idempotency: request dropped or panicked; releasing its claim");
            self.store.release_detached(self.key, lease, self.timeout);
        }
    }
}
