//! Retry with backoff (in progress).
