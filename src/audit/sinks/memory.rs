use std::sync::{Arc, Mutex, MutexGuard};

use super::Sink;
use crate::{BoxError, audit::AuditEvent};

/// Keeps every event in memory; for tests.
///
/// Clones share the same events, so keep one clone to read what the writer wrote.
///
/// ```
/// use steadfast::audit::{AuditEvent, Auditor, MemorySink};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let sink = MemorySink::new();
/// let auditor = Auditor::builder().build(sink.clone());
/// auditor.record(AuditEvent::new("job.run")).await;
/// auditor.flush().await;
/// assert_eq!(sink.events()[0].action, "job.run");
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    events: Arc<Mutex<Vec<AuditEvent>>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the events written so far.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.lock().clone()
    }

    /// How many events were written.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no event was written.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Removes and returns the events written so far.
    pub fn take(&self) -> Vec<AuditEvent> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, Vec<AuditEvent>> {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Sink for MemorySink {
    async fn write(&mut self, events: &[AuditEvent]) -> Result<(), BoxError> {
        self.lock().extend_from_slice(events);
        Ok(())
    }
}
