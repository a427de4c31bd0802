//! The values a [`Store`](super::Store) keeps and returns.

use std::{borrow::Cow, fmt, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};

use crate::{
    BoxError,
    idempotency::{Fingerprint, IdempotencyKey},
};

/// The identity of an entry: SHA-256 of the scope and the key.
///
/// Neither the scope nor the key is stored as is; stores key their entries by
/// this digest (Redis by its hex form after the prefix).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryKey([u8; 32]);

impl EntryKey {
    /// The entry of `key` within `scope`.
    pub fn new(scope: &str, key: &IdempotencyKey) -> Self {
        let mut h = Sha256::new();
        h.update(b"steadfast-idempotency-key-v1\0");
        h.update((scope.len() as u64).to_be_bytes());
        h.update(scope.as_bytes());
        h.update(key.as_str().as_bytes());
        Self(h.finalize().into())
    }

    /// The 32 bytes of the digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest as 64 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        use fmt::Write;
        let mut s = String::with_capacity(64);
        for b in self.0 {
            let _ = write!(s, "{b:02x}");
        }
        s
    }
}

impl fmt::Debug for EntryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntryKey({})", self.to_hex())
    }
}

/// A response kept for replay: status, headers (without hop-by-hop headers,
/// `Set-Cookie`, `Date` and `Content-Length`) and the complete body.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers replayed.
    pub headers: HeaderMap,
    /// The body, byte for byte.
    pub body: Bytes,
}

impl StoredResponse {
    /// The bytes this response weighs in a store, roughly.
    pub fn weight(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 8)
            .sum();
        self.body.len() + headers + 16
    }
}

/// How a claimed request ended, as far as its duplicates are concerned.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Completion {
    /// The response, replayed to every duplicate.
    Response(StoredResponse),
    /// The request ran and answered `status`, but its response could not be kept
    /// (larger than the response limit, or with trailers). Duplicates are answered
    /// 409 and never run the handler again.
    NotStored {
        /// The status the request was answered with.
        status: StatusCode,
    },
}

/// The live entry of a key.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Entry {
    /// A request holds the claim and is running.
    InFlight {
        /// The fingerprint of the request that holds it.
        fingerprint: Fingerprint,
        /// How long until the claim may be taken over.
        lock_expires_in: Duration,
    },
    /// A request completed.
    Completed {
        /// The fingerprint of the request that completed.
        fingerprint: Fingerprint,
        /// What it left for its duplicates.
        completion: Completion,
    },
}

/// The result of [`Store::claim`](super::Store::claim).
#[derive(Debug)]
pub enum Claim<L> {
    /// The key was free and is now claimed by this request.
    Acquired(L),
    /// The key is taken.
    Existing(Entry),
}

/// What kind of failure a [`StoreError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store could not be reached or failed.
    Unavailable,
    /// The store did not answer in time.
    Timeout,
    /// The store returned something that is not a valid entry.
    Corrupt,
    /// The claim was taken over (its lock TTL passed) before it was completed.
    LeaseLost,
}

/// A store failure.
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    message: Cow<'static, str>,
    source: Option<BoxError>,
}

impl StoreError {
    /// A failure of `kind`.
    pub fn new(kind: StoreErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    pub(crate) fn timeout() -> Self {
        Self::new(
            StoreErrorKind::Timeout,
            "the idempotency store did not answer in time",
        )
    }

    #[cfg(any(feature = "memory-store", feature = "redis"))]
    pub(crate) fn lease_lost() -> Self {
        Self::new(
            StoreErrorKind::LeaseLost,
            "the claim was taken over after its lock TTL passed",
        )
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
