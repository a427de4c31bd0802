//! What every benchmark shares: a runtime, a request, and the bare service that
//! answers at once, so each group compares layers around the same work.
#![allow(dead_code)]

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::{Service, ServiceExt};

/// A current-thread runtime: no cross-thread wake-ups in the numbers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A small GET, built fresh per iteration (the same cost in every variant).
pub fn get(path: &'static str) -> Request<Full<Bytes>> {
    Request::get(path).body(Full::default()).unwrap()
}

/// The bare service: answers 200 with a short body at once.
pub async fn ok(_req: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

/// Calls `svc` once (ready + call), as a server does per request.
pub async fn call<S, B>(svc: &mut S, req: Request<B>) -> S::Response
where
    S: Service<Request<B>>,
    S::Error: std::fmt::Debug,
{
    svc.ready().await.unwrap().call(req).await.unwrap()
}
