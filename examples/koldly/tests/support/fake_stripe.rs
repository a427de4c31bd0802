//! A fake Stripe API on loopback speaking Stripe's wire format: form-encoded
//! POSTs (`/v1/customers`, `/v1/checkout/sessions`,
//! `/v1/billing_portal/sessions`), `GET /v1/invoices` with Stripe's
//! `limit`/`starting_after` cursor, JSON answers. It records every request
//! (path, form or query, `Idempotency-Key`, `Authorization`) and can answer
//! 503 to the next few calls of a path. It does NOT deduplicate on
//! `Idempotency-Key`: a test counting its requests sees every one koldly sent.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    extract::{RawQuery, State},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, Uri};
use serde_json::{Value, json};

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct StripeRequest {
    pub method: String,
    pub path: String,
    /// The form body (POST) or the query (GET), in order.
    pub params: Vec<(String, String)>,
    pub idempotency_key: Option<String>,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
}

impl StripeRequest {
    /// The value of the parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Inner {
    seen: Vec<StripeRequest>,
    /// Path -> how many more calls answer 503.
    failures: HashMap<String, usize>,
    /// Customer -> their invoices, newest first.
    invoices: HashMap<String, Vec<Value>>,
    next_id: u64,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    customer_delay: Duration,
}

pub struct FakeStripe {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl FakeStripe {
    /// Starts the fake; customer creation takes `customer_delay` (to widen
    /// the window concurrent first checkouts race in).
    pub async fn start(customer_delay: Duration) -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let shared = Shared {
            inner: inner.clone(),
            customer_delay,
        };
        let router = Router::new()
            .route("/v1/customers", post(create))
            .route("/v1/checkout/sessions", post(create))
            .route("/v1/billing_portal/sessions", post(create))
            .route("/v1/invoices", get(invoices))
            .with_state(shared);
        let addr = super::common::serve(router).await;
        Self { addr, inner }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<StripeRequest> {
        self.inner.lock().unwrap().seen.clone()
    }

    /// The requests to `path`.
    pub fn seen_at(&self, path: &str) -> Vec<StripeRequest> {
        self.seen().into_iter().filter(|r| r.path == path).collect()
    }

    /// The next `n` calls of `path` answer 503.
    pub fn fail_next(&self, path: &str, n: usize) {
        self.inner
            .lock()
            .unwrap()
            .failures
            .insert(path.to_owned(), n);
    }

    /// Gives `customer` these invoices (ids), newest first.
    pub fn set_invoices(&self, customer: &str, ids: &[&str]) {
        let invoices = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                json!({
                    "id": id, "object": "invoice", "customer": customer, "number": format!("KOL-{i}"),
                    "status": "paid", "currency": "usd", "amount_due": 2900, "amount_paid": 2900,
                    "created": 1_700_000_000 - i as i64,
                    "hosted_invoice_url": format!("https://invoice.stripe.test/{id}"),
                    "invoice_pdf": format!("https://invoice.stripe.test/{id}.pdf"),
                })
            })
            .collect();
        self.inner
            .lock()
            .unwrap()
            .invoices
            .insert(customer.to_owned(), invoices);
    }
}

fn record(shared: &Shared, method: &str, path: &str, headers: &HeaderMap, params: &str) -> bool {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut inner = shared.inner.lock().unwrap();
    inner.seen.push(StripeRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        params: form_urlencoded::parse(params.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        idempotency_key: header("idempotency-key"),
        authorization: header("authorization"),
        content_type: header("content-type"),
    });
    match inner.failures.get_mut(path) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    }
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [("content-type", "application/json")],
        json!({"error": {"type": "api_error", "message": "try again"}}).to_string(),
    )
        .into_response()
}

async fn create(
    State(shared): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let form = String::from_utf8_lossy(&body).into_owned();
    if record(&shared, "POST", &path, &headers, &form) {
        return unavailable();
    }
    if path == "/v1/customers" {
        tokio::time::sleep(shared.customer_delay).await;
    }
    let n = {
        let mut inner = shared.inner.lock().unwrap();
        inner.next_id += 1;
        inner.next_id
    };
    let body = match path.as_str() {
        "/v1/customers" => json!({ "id": format!("cus_fake{n}"), "object": "customer" }),
        "/v1/checkout/sessions" => json!({
            "id": format!("cs_fake{n}"), "object": "checkout.session",
            "url": format!("https://checkout.stripe.test/c/cs_fake{n}"),
        }),
        _ => json!({
            "id": format!("bps_fake{n}"), "object": "billing_portal.session",
            "url": format!("https://billing.stripe.test/p/{n}"),
        }),
    };
    ([("content-type", "application/json")], body.to_string()).into_response()
}

async fn invoices(
    State(shared): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    if record(&shared, "GET", "/v1/invoices", &headers, &query) {
        return unavailable();
    }
    let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let customer = params.get("customer").cloned().unwrap_or_default();
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(10);
    let all = shared
        .inner
        .lock()
        .unwrap()
        .invoices
        .get(&customer)
        .cloned()
        .unwrap_or_default();
    let start = match params.get("starting_after") {
        None => 0,
        Some(after) => match all.iter().position(|i| i["id"] == after.as_str()) {
            Some(p) => p + 1,
            None => {
                return (
                    StatusCode::BAD_REQUEST,
                    [("content-type", "application/json")],
                    json!({"error": {"type": "invalid_request_error", "message": "No such invoice"}}).to_string(),
                )
                    .into_response();
            }
        },
    };
    let page: Vec<Value> = all.iter().skip(start).take(limit).cloned().collect();
    let has_more = start + page.len() < all.len();
    (
        [("content-type", "application/json")],
        json!({ "object": "list", "data": page, "has_more": has_more, "url": "/v1/invoices" })
            .to_string(),
    )
        .into_response()
}
