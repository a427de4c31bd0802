//! A fake Mailgun-compatible API on loopback: `POST /v3/{domain}/messages`
//! (form-encoded, basic auth `api:KEY`) answers from a script (then 200 with
//! a Mailgun id), records every message it was sent, and can hang.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{Router, extract::State, response::IntoResponse, routing::post};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};

/// The key the fake accepts.
pub const KEY: &str = "key-fake-mailgun-0123456789";

/// One scripted answer.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// This status (2xx: a Mailgun success body).
    Status(u16),
    /// Never answers.
    Hang,
}

/// One message received: its form fields.
pub type Received = Vec<(String, String)>;

#[derive(Default)]
struct Inner {
    script: VecDeque<Answer>,
    received: Vec<Received>,
}

/// The running fake.
#[derive(Clone)]
pub struct FakeMailgun {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl FakeMailgun {
    /// Starts it with `script` (then 200s).
    pub async fn start(script: Vec<Answer>) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            script: script.into(),
            received: Vec::new(),
        }));
        let app = Router::new()
            .route("/v3/{domain}/messages", post(messages))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, inner }
    }

    /// `MAIL_API_BASE` for it.
    pub fn base(&self) -> String {
        format!("http://{}/v3/mg.example.com", self.addr)
    }

    /// Every message received, in order (hung ones included).
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// The `v:queue_id` of every message received.
    pub fn queue_ids(&self) -> Vec<String> {
        self.received()
            .iter()
            .map(|m| field(m, "v:queue_id").unwrap_or_default().to_owned())
            .collect()
    }
}

/// The value of form field `name`.
pub fn field<'a>(message: &'a Received, name: &str) -> Option<&'a str> {
    message
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn messages(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("api:{KEY}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (StatusCode::UNAUTHORIZED, "Forbidden").into_response();
    }
    let form: Received = form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let answer = {
        let mut inner = inner.lock().unwrap();
        inner.received.push(form.clone());
        inner.script.pop_front().unwrap_or(Answer::Status(200))
    };
    match answer {
        Answer::Hang => std::future::pending().await,
        Answer::Status(status) if (200..300).contains(&status) => {
            let id = format!("<{}@mg.example.com>", uuid::Uuid::new_v4().simple());
            (
                StatusCode::OK,
                [("content-type", "application/json")],
                serde_json::json!({"id": id, "message": "Queued. Thank you."}).to_string(),
            )
                .into_response()
        }
        Answer::Status(status) => (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/json")],
            serde_json::json!({"message": format!("fake error {status}")}).to_string(),
        )
            .into_response(),
    }
}
