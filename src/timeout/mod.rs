//! Per-route timeouts (in progress).
