//! Where audit events go: the [`Sink`] trait and the sinks steadfast ships.

mod json_lines;
mod memory;
mod tracing_sink;

use std::future::Future;

use super::AuditEvent;
use crate::BoxError;

pub use json_lines::JsonLinesSink;
pub use memory::MemorySink;
pub use tracing_sink::TracingSink;

/// A destination for audit events.
///
/// The [`Auditor`](super::Auditor)'s background writer owns its sink and hands
/// it batches of events that have already been [redacted](super::Redaction).
/// A write either stores the whole batch and returns `Ok`, or returns `Err`;
/// the writer then retries the same batch with backoff, so a sink that can
/// fail halfway should make a repeated write harmless (or accept duplicates).
/// A sink never fails a request: its errors are counted and logged.
///
/// Implement it with an `async fn`:
///
/// ```
/// use steadfast::{BoxError, audit::{AuditEvent, Sink}};
///
/// /// Counts events by action, e.g. for a metrics exporter.
/// #[derive(Default)]
/// struct CountingSink(std::collections::HashMap<String, u64>);
///
/// impl Sink for CountingSink {
///     async fn write(&mut self, events: &[AuditEvent]) -> Result<(), BoxError> {
///         for event in events {
///             *self.0.entry(event.action.to_string()).or_default() += 1;
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Sink: Send + 'static {
    /// Stores `events`, in order.
    fn write(&mut self, events: &[AuditEvent])
    -> impl Future<Output = Result<(), BoxError>> + Send;
}
