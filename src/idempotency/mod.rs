//! Idempotency-Key deduplication (in progress).
