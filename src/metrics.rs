//! What steadfast counts, through the `metrics` facade crate (feature `metrics`).
//!
//! Every layer reports its decisions as counters and histograms with the stable
//! names and labels below; install any `metrics` recorder (the Prometheus
//! exporter, StatsD, OpenTelemetry's bridge) and they appear. Nothing is
//! recorded on a success path: each metric marks a failure, a retry or a
//! decision a dashboard wants to see. Label values are the short, stable,
//! lower-case names in the table (the [`ErrorClass`](crate::ErrorClass) names
//! for `class`), never request data, so their number is bounded; the one label
//! taken from configuration is `route`, a rule's path as configured (a
//! template such as `/campaigns/{id}`, not the request's path).
//!
//! | name | type | labels | counts |
//! | --- | --- | --- | --- |
//! | `steadfast_retry_attempts_total` | counter | `class` | retries made (attempt 2 and later), by the class of the failure that caused each |
//! | `steadfast_retry_delay_seconds` | histogram | `delay_source` (`backoff`, `retry-after`) | the delay waited before each retry |
//! | `steadfast_retry_budget_refusals_total` | counter | `class` | retries the [`RetryBudget`](crate::retry::RetryBudget) refused |
//! | `steadfast_retry_give_ups_total` | counter | `class`, `reason` (`exhausted`, `budget`, `deadline`, `retry_after`, `not_idempotent`) | retryable failures returned without another attempt |
//! | `steadfast_idempotency_claims_total` | counter | | keys claimed: the handler ran under the key |
//! | `steadfast_idempotency_replays_total` | counter | | stored responses replayed to a duplicate |
//! | `steadfast_idempotency_conflicts_total` | counter | `reason` (`in_flight`, `not_stored`) | duplicates answered `409 Conflict` |
//! | `steadfast_idempotency_mismatches_total` | counter | | keys reused for a different request, answered `422` |
//! | `steadfast_idempotency_store_errors_total` | counter | `operation` (`claim`, `wait`, `complete`, `release`) | store calls that failed or timed out |
//! | `steadfast_timeouts_total` | counter | `route` | requests the route timeout cut short |
//! | `steadfast_audit_events_written_total` | counter | | events the sink accepted |
//! | `steadfast_audit_events_dropped_total` | counter | `reason` (`queue_full`, `shut_down`, `cancelled`, `sink_failed`) | events lost |
//! | `steadfast_audit_sink_errors_total` | counter | | failed sink writes (each retry of a batch counts) |
//! | `steadfast_breaker_transitions_total` | counter | `from`, `to` (`closed`, `open`, `half_open`) | circuit state changes |
//! | `steadfast_overload_refusals_total` | counter | `reason` (`deadline`, `queue_full`) | requests the overload layer refused |
//! | `steadfast_hedges_total` | counter | `outcome` (`sent`, `budget_refused`) | hedged attempts sent, and those the budget refused |
//!
//! The names are also constants of this module, for dashboards written in
//! Rust and for tests; [`describe`] registers a description and unit for each
//! with the installed recorder.
//!
//! # Cost
//!
//! Without the feature none of this is compiled. With it, a counter is one call
//! into the recorder where the event happens (`benches/README.md` has the
//! figures); success paths record nothing.
//!
//! ```
//! use metrics_util::debugging::{DebugValue, DebuggingRecorder};
//! use steadfast::retry::RetryPolicy;
//! use std::{io, sync::atomic::{AtomicU32, Ordering}};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! recorder.install().unwrap();
//! steadfast::metrics::describe();
//!
//! // A reset once, then an answer: one retry.
//! let calls = AtomicU32::new(0);
//! RetryPolicy::new()
//!     .run(|| async {
//!         match calls.fetch_add(1, Ordering::SeqCst) {
//!             0 => Err(io::Error::from(io::ErrorKind::ConnectionReset)),
//!             _ => Ok("done"),
//!         }
//!     })
//!     .await
//!     .unwrap();
//!
//! let retries: Vec<_> = snapshotter
//!     .snapshot()
//!     .into_vec()
//!     .into_iter()
//!     .filter(|(key, ..)| key.key().name() == steadfast::metrics::RETRY_ATTEMPTS)
//!     .map(|(key, _, _, value)| (key.key().labels().map(|l| l.value().to_owned()).collect::<Vec<_>>(), value))
//!     .collect();
//! assert_eq!(retries, [(vec!["network".to_owned()], DebugValue::Counter(1))]);
//! # }
//! ```

/// Retries made, by `class`.
pub const RETRY_ATTEMPTS: &str = "steadfast_retry_attempts_total";
/// The delay before each retry, in seconds, by `delay_source`.
pub const RETRY_DELAY: &str = "steadfast_retry_delay_seconds";
/// Retries the budget refused, by `class`.
pub const RETRY_BUDGET_REFUSALS: &str = "steadfast_retry_budget_refusals_total";
/// Retryable failures returned without another attempt, by `class` and `reason`.
pub const RETRY_GIVE_UPS: &str = "steadfast_retry_give_ups_total";
/// Idempotency keys claimed.
pub const IDEMPOTENCY_CLAIMS: &str = "steadfast_idempotency_claims_total";
/// Stored responses replayed.
pub const IDEMPOTENCY_REPLAYS: &str = "steadfast_idempotency_replays_total";
/// Duplicates answered 409, by `reason`.
pub const IDEMPOTENCY_CONFLICTS: &str = "steadfast_idempotency_conflicts_total";
/// Keys reused for a different request, answered 422.
pub const IDEMPOTENCY_MISMATCHES: &str = "steadfast_idempotency_mismatches_total";
/// Failed idempotency store calls, by `operation`.
pub const IDEMPOTENCY_STORE_ERRORS: &str = "steadfast_idempotency_store_errors_total";
/// Requests cut short by the route timeout, by `route`.
pub const TIMEOUTS: &str = "steadfast_timeouts_total";
/// Audit events the sink accepted.
pub const AUDIT_WRITTEN: &str = "steadfast_audit_events_written_total";
/// Audit events lost, by `reason`.
pub const AUDIT_DROPPED: &str = "steadfast_audit_events_dropped_total";
/// Failed audit sink writes.
pub const AUDIT_SINK_ERRORS: &str = "steadfast_audit_sink_errors_total";
/// Circuit breaker state changes, by `from` and `to`.
pub const BREAKER_TRANSITIONS: &str = "steadfast_breaker_transitions_total";
/// Requests the overload layer refused, by `reason`.
pub const OVERLOAD_REFUSALS: &str = "steadfast_overload_refusals_total";
/// Hedged attempts, by `outcome`.
pub const HEDGES: &str = "steadfast_hedges_total";

/// Registers a description and a unit for every metric above with the
/// installed recorder (call it once, after installing the recorder).
pub fn describe() {
    use ::metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        RETRY_ATTEMPTS,
        Unit::Count,
        "Retries made, by the class of the failure that caused each"
    );
    describe_histogram!(
        RETRY_DELAY,
        Unit::Seconds,
        "The delay waited before each retry"
    );
    describe_counter!(
        RETRY_BUDGET_REFUSALS,
        Unit::Count,
        "Retries the retry budget refused"
    );
    describe_counter!(
        RETRY_GIVE_UPS,
        Unit::Count,
        "Retryable failures returned without another attempt, by reason"
    );
    describe_counter!(IDEMPOTENCY_CLAIMS, Unit::Count, "Idempotency keys claimed");
    describe_counter!(
        IDEMPOTENCY_REPLAYS,
        Unit::Count,
        "Stored responses replayed to duplicates"
    );
    describe_counter!(
        IDEMPOTENCY_CONFLICTS,
        Unit::Count,
        "Duplicates answered 409 Conflict"
    );
    describe_counter!(
        IDEMPOTENCY_MISMATCHES,
        Unit::Count,
        "Idempotency keys reused for a different request (422)"
    );
    describe_counter!(
        IDEMPOTENCY_STORE_ERRORS,
        Unit::Count,
        "Idempotency store calls that failed or timed out"
    );
    describe_counter!(
        TIMEOUTS,
        Unit::Count,
        "Requests cut short by the route timeout"
    );
    describe_counter!(AUDIT_WRITTEN, Unit::Count, "Audit events the sink accepted");
    describe_counter!(AUDIT_DROPPED, Unit::Count, "Audit events lost");
    describe_counter!(AUDIT_SINK_ERRORS, Unit::Count, "Failed audit sink writes");
    describe_counter!(
        BREAKER_TRANSITIONS,
        Unit::Count,
        "Circuit breaker state changes"
    );
    describe_counter!(
        OVERLOAD_REFUSALS,
        Unit::Count,
        "Requests refused by the overload layer"
    );
    describe_counter!(HEDGES, Unit::Count, "Hedged attempts sent or refused");
}
