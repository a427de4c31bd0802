//! The circuit breaker's tracing events, in a test binary of their own: the
//! events are captured through a thread-local subscriber, and tracing caches
//! each callsite's interest process-wide, so other tests hitting the same
//! callsites on other threads (with no subscriber) could hide events from it.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::{Request, Response};
use steadfast::breaker::{BreakerConfig, BreakerLayer, BreakerState, Window};
use tokio::time::advance;
use tower::{Layer, ServiceExt, service_fn};

/// A `MakeWriter` collecting what a tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A request the upstream answers with `status`.
fn req(status: u16) -> Request<u16> {
    Request::get("http://upstream/").body(status).unwrap()
}

#[tokio::test(start_paused = true)]
async fn every_transition_is_a_tracing_event() {
    let out = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(out.clone())
        .with_ansi(false)
        .with_env_filter("steadfast=info")
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let breaker = BreakerLayer::server(
        BreakerConfig::new()
            .window(Window::Count(10))
            .min_calls(4)
            .failure_rate(0.5)
            .open_for(Duration::from_secs(10))
            .half_open_probes(2),
    );
    let svc = breaker.layer(service_fn(|req: Request<u16>| async move {
        let status = *req.body();
        Ok::<_, Infallible>(
            Response::builder()
                .status(status)
                .body(String::new())
                .unwrap(),
        )
    }));
    for status in [500, 500, 200, 200] {
        svc.clone().oneshot(req(status)).await.unwrap();
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    advance(Duration::from_secs(10)).await;
    for _ in 0..2 {
        svc.clone().oneshot(req(200)).await.unwrap();
    }
    assert_eq!(breaker.state(), BreakerState::Closed);

    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].contains("WARN")
            && lines[0].contains("circuit breaker opened")
            && lines[0].contains("from=\"closed\"")
            && lines[0].contains("to=\"open\""),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("INFO")
            && lines[1].contains("from=\"open\"")
            && lines[1].contains("to=\"half_open\""),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("from=\"half_open\"") && lines[2].contains("to=\"closed\""),
        "{}",
        lines[2]
    );
}
