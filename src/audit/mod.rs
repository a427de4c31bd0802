//! Audit events (in progress).
