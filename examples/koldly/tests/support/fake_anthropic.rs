//! A fake Anthropic Messages API on loopback: `POST /v1/messages` answers
//! from a script (then with a default), records what it was sent and when,
//! and can hold its answers behind a gate the test opens.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::{Router, extract::State, response::IntoResponse, routing::post};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tokio::sync::Semaphore;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A response.
    Reply {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// Never answers.
    Hang,
}

impl Answer {
    /// A 200 Messages API reply whose text is `text`, with this usage.
    pub fn text(text: &str, input_tokens: i64, output_tokens: i64) -> Self {
        let body = serde_json::json!({
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": "claude-test",
            "content": [{ "type": "text", "text": text }],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": { "input_tokens": input_tokens, "output_tokens": output_tokens },
        });
        Self::Reply {
            status: 200,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    /// A valid email draft.
    pub fn draft(subject: &str, body: &str) -> Self {
        Self::text(
            &serde_json::json!({ "subject": subject, "body": body }).to_string(),
            120,
            40,
        )
    }

    /// An error status with `Retry-After` (seconds) and an API error body.
    pub fn refused(status: u16, retry_after: Option<u64>) -> Self {
        let mut headers = Vec::new();
        if let Some(secs) = retry_after {
            headers.push(("retry-after", secs.to_string()));
        }
        Self::Reply {
            status,
            headers,
            body: r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
                .to_owned(),
        }
    }

    /// A 200 with this raw body.
    pub fn raw(body: &str) -> Self {
        Self::Reply {
            status: 200,
            headers: Vec::new(),
            body: body.to_owned(),
        }
    }
}

/// What the fake was sent.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
}

pub struct FakeAnthropic {
    pub addr: SocketAddr,
    script: Arc<Mutex<VecDeque<Answer>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    gate: Arc<Semaphore>,
}

#[derive(Clone)]
struct Shared {
    script: Arc<Mutex<VecDeque<Answer>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    default: Answer,
    gate: Option<Arc<Semaphore>>,
}

impl FakeAnthropic {
    /// Answers `script` in order, then `default` to every further call.
    pub async fn start(script: Vec<Answer>, default: Answer) -> Self {
        Self::serve(script, default, false).await
    }

    /// Like `start`, but every answer waits for a permit of [`open`](Self::open).
    pub async fn gated(default: Answer) -> Self {
        Self::serve(Vec::new(), default, true).await
    }

    async fn serve(script: Vec<Answer>, default: Answer, gated: bool) -> Self {
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Semaphore::new(0));
        let shared = Shared {
            script: script.clone(),
            seen: seen.clone(),
            default,
            gate: gated.then(|| gate.clone()),
        };
        let router = Router::new()
            .route("/v1/messages", post(messages))
            .with_state(shared);
        let addr = super::common::serve(router).await;
        Self {
            addr,
            script,
            seen,
            gate,
        }
    }

    /// The base URL to configure.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What it was sent so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many calls it received.
    pub fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Lets `n` held answers go.
    pub fn open(&self, n: usize) {
        self.gate.add_permits(n);
    }

    /// Answers not yet given.
    pub fn unused(&self) -> usize {
        self.script.lock().unwrap().len()
    }
}

async fn messages(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    shared.seen.lock().unwrap().push(Seen {
        at: Instant::now(),
        headers,
        body: json,
    });
    let answer = shared
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| shared.default.clone());
    if let Some(gate) = &shared.gate {
        gate.acquire().await.unwrap().forget();
    }
    match answer {
        Answer::Hang => std::future::pending().await,
        Answer::Reply {
            status,
            headers,
            body,
        } => {
            let mut res = (
                StatusCode::from_u16(status).unwrap(),
                [("content-type", "application/json")],
                body,
            )
                .into_response();
            for (name, value) in headers {
                res.headers_mut().insert(name, value.parse().unwrap());
            }
            res
        }
    }
}
