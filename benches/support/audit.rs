//! What the audit and stack groups share: a sink that keeps nothing and the
//! request the audit group sends.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Method, Request};
use http_body_util::Full;
use steadfast::{
    BoxError,
    audit::{AuditEvent, AuditLayer, Auditor, Sink},
};
use tower_http::{
    classify::{ServerErrorsAsFailures, SharedClassifier},
    trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer},
};
use tracing::Level;

/// A sink that keeps nothing: the cost measured is the layer's and the queue's.
pub struct NullSink;

impl Sink for NullSink {
    async fn write(&mut self, events: &[AuditEvent]) -> Result<(), BoxError> {
        std::hint::black_box(events);
        Ok(())
    }
}

/// A POST to `path` from a known peer with a user agent, as a server sees it.
pub fn request(path: &'static str) -> Request<Full<Bytes>> {
    let mut req = super::get(path);
    *req.method_mut() = Method::POST;
    req.extensions_mut()
        .insert(SocketAddr::from(([127, 0, 0, 1], 40_000)));
    req.headers_mut()
        .insert("user-agent", HeaderValue::from_static("bench/1.0"));
    req
}

/// The audit layer with one audited route: `POST /login`.
pub fn layer(auditor: &Auditor) -> AuditLayer {
    AuditLayer::new(auditor.clone()).route(Method::POST, "/login", "authn.login.success")
}

/// A subscriber writing each event as a JSON line to a discarding writer, as a
/// service logging its requests would.
pub fn json_log_dispatch() -> tracing::Dispatch {
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::sink)
        .with_max_level(Level::INFO)
        .finish();
    tracing::Dispatch::new(subscriber)
}

/// tower-http's `TraceLayer` with a span and a response event at INFO: what
/// logs one line per request. Used under [`json_log_dispatch`].
pub fn json_trace_layer() -> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, DefaultMakeSpan> {
    TraceLayer::new_for_http()
        .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
        .on_response(DefaultOnResponse::new().level(Level::INFO))
}
