use super::Sink;
use crate::{BoxError, audit::AuditEvent};

/// Emits each event through `tracing` on the `audit` target, at INFO level.
///
/// The main fields are recorded one by one (`action`, `outcome`, `actor`,
/// `client_ip`, `request_id`, `method`, `route`, `status`, `reason`,
/// `target_type`, `target_id`), with OpenTelemetry's HTTP names beside them
/// (`http.route`, `http.request.method`, `http.response.status_code`), and the
/// whole event as JSON in `event`, so a subscriber can filter on `audit=info`
/// and route it to its own output.
///
/// ```
/// use steadfast::audit::{Auditor, TracingSink};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let auditor = Auditor::builder().build(TracingSink::new());
/// # let _ = auditor;
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingSink {
    _private: (),
}

impl TracingSink {
    /// The sink.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Sink for TracingSink {
    async fn write(&mut self, events: &[AuditEvent]) -> Result<(), BoxError> {
        for event in events {
            let target = event.target.as_ref();
            tracing::info!(
                target: "audit",
                action = %event.action,
                outcome = event.outcome.as_str(),
                actor = event.actor.as_deref(),
                client_ip = event.client_ip.map(tracing::field::display),
                request_id = event.request_id.as_deref(),
                method = event.method.as_ref().map(http::Method::as_str),
                route = event.route.as_deref(),
                http.route = event.route.as_deref(),
                http.request.method = event.method.as_ref().map(http::Method::as_str),
                status = event.status.map(|s| s.as_u16()),
                http.response.status_code = event.status.map(|s| s.as_u16()),
                reason = event.reason.as_deref(),
                target_type = target.map(|t| &*t.kind),
                target_id = target.map(|t| t.id.as_str()),
                event = %event.to_json(),
                "audit event"
            );
        }
        Ok(())
    }
}
