//! The Stripe API client: form-encoded requests (Stripe's wire format) with
//! the secret key as a bearer token, through steadfast's `RetryLayer` around
//! the Stripe circuit breaker ([`http_client::retrying_client_with`]).
//!
//! Every POST carries an `Idempotency-Key` the caller derives from what the
//! request is for (the user for a customer, the user, plan and client key for
//! a checkout), so a retry — the retry layer's, or a client's — reuses it and
//! Stripe does the work once. Stripe honours the key, so POSTs are retried
//! like GETs: after a timeout, a connection failure, a 429, 502, 503 or 504,
//! within the request's deadline.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::Value;
use steadfast::{
    Deadline,
    retry::{RetryLayer, RetryPolicy},
};

use super::config::StripeApi;
use crate::http_client::{self, RetryingClient};

/// One attempt's time limit.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// A call's whole time limit, retries included (under the 15 s route class).
const CALL_DEADLINE: Duration = Duration::from_secs(12);

/// A Stripe API client; cheap to clone (one circuit shared by every clone).
#[derive(Clone)]
pub struct Stripe {
    api: StripeApi,
    client: RetryingClient,
}

/// Why a Stripe call did not succeed.
#[derive(Debug)]
pub enum StripeError {
    /// Stripe could not be reached, timed out, answered 429 or 5xx, or its
    /// circuit is open: try later.
    Unavailable(String),
    /// Stripe refused the request (a 4xx other than 429): its message.
    Refused(StatusCode, String),
    /// A 2xx whose body is not what Stripe documents.
    Malformed(String),
}

impl std::fmt::Display for StripeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable(why) => write!(f, "Stripe unavailable: {why}"),
            Self::Refused(status, message) => write!(f, "Stripe refused ({status}): {message}"),
            Self::Malformed(why) => write!(f, "Stripe answered an unexpected body: {why}"),
        }
    }
}

/// A Checkout Session.
#[derive(Debug, Clone, Deserialize)]
pub struct CheckoutSession {
    /// `cs_...`.
    pub id: String,
    /// Where the user pays.
    pub url: String,
}

/// An invoice as koldly shows it.
#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
pub struct Invoice {
    /// `in_...`.
    pub id: String,
    /// The invoice number, once finalised.
    #[serde(default)]
    pub number: Option<String>,
    /// `draft`, `open`, `paid`, `uncollectible`, `void`.
    #[serde(default)]
    pub status: Option<String>,
    /// ISO currency code.
    #[serde(default)]
    pub currency: Option<String>,
    /// In the currency's smallest unit.
    #[serde(default)]
    pub amount_due: i64,
    /// In the currency's smallest unit.
    #[serde(default)]
    pub amount_paid: i64,
    /// Unix seconds.
    #[serde(default)]
    pub created: i64,
    /// The hosted invoice page.
    #[serde(default)]
    pub hosted_invoice_url: Option<String>,
    /// The PDF.
    #[serde(default)]
    pub invoice_pdf: Option<String>,
}

/// One page of Stripe's invoice list.
#[derive(Debug, Clone, Deserialize)]
pub struct InvoiceList {
    /// The invoices, newest first.
    pub data: Vec<Invoice>,
    /// Whether more follow the last one.
    #[serde(default)]
    pub has_more: bool,
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

#[derive(Deserialize)]
struct WithUrl {
    url: String,
}

impl Stripe {
    /// A client for `api`.
    pub fn new(api: StripeApi) -> Self {
        let policy = RetryPolicy::new()
            .max_retries(2)
            .base_delay(Duration::from_millis(200))
            .max_delay(Duration::from_secs(2))
            .attempt_timeout(ATTEMPT_TIMEOUT)
            .deadline(CALL_DEADLINE);
        let client =
            http_client::retrying_client_with(RetryLayer::new(policy), api.circuit.layer());
        Self { api, client }
    }

    /// The configured API (prices, base URL).
    pub fn api(&self) -> &StripeApi {
        &self.api
    }

    /// `POST /v1/customers`: a customer for `user_id`, returning its id.
    pub async fn create_customer(
        &self,
        email: &str,
        name: &str,
        user_id: &str,
        idempotency_key: &str,
        deadline: Option<Deadline>,
    ) -> Result<String, StripeError> {
        let form = [
            ("email", email),
            ("name", name),
            ("metadata[user_id]", user_id),
        ];
        let created: Created = self
            .call(
                Method::POST,
                "/v1/customers",
                &form,
                Some(idempotency_key),
                deadline,
            )
            .await?;
        Ok(created.id)
    }

    /// `POST /v1/checkout/sessions`: a subscription checkout of `price` for
    /// `customer`.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_checkout_session(
        &self,
        customer: &str,
        price: &str,
        user_id: &str,
        plan: &str,
        success_url: &str,
        cancel_url: &str,
        idempotency_key: &str,
        deadline: Option<Deadline>,
    ) -> Result<CheckoutSession, StripeError> {
        let form = [
            ("mode", "subscription"),
            ("customer", customer),
            ("client_reference_id", user_id),
            ("line_items[0][price]", price),
            ("line_items[0][quantity]", "1"),
            ("success_url", success_url),
            ("cancel_url", cancel_url),
            ("metadata[user_id]", user_id),
            ("metadata[plan]", plan),
            ("subscription_data[metadata][user_id]", user_id),
        ];
        self.call(
            Method::POST,
            "/v1/checkout/sessions",
            &form,
            Some(idempotency_key),
            deadline,
        )
        .await
    }

    /// `POST /v1/billing_portal/sessions`: the customer portal's URL.
    pub async fn create_portal_session(
        &self,
        customer: &str,
        return_url: &str,
        idempotency_key: &str,
        deadline: Option<Deadline>,
    ) -> Result<String, StripeError> {
        let form = [("customer", customer), ("return_url", return_url)];
        let session: WithUrl = self
            .call(
                Method::POST,
                "/v1/billing_portal/sessions",
                &form,
                Some(idempotency_key),
                deadline,
            )
            .await?;
        Ok(session.url)
    }

    /// `GET /v1/invoices`: a page of `customer`'s invoices, newest first,
    /// after the invoice `starting_after` (Stripe's cursor).
    pub async fn list_invoices(
        &self,
        customer: &str,
        limit: i64,
        starting_after: Option<&str>,
        deadline: Option<Deadline>,
    ) -> Result<InvoiceList, StripeError> {
        let limit = limit.to_string();
        let mut query = vec![("customer", customer), ("limit", limit.as_str())];
        if let Some(after) = starting_after {
            query.push(("starting_after", after));
        }
        self.call(Method::GET, "/v1/invoices", &query, None, deadline)
            .await
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, &str)],
        idempotency_key: Option<&str>,
        deadline: Option<Deadline>,
    ) -> Result<T, StripeError> {
        let encoded = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let (uri, body) = if method == Method::GET {
            (
                format!("{}{path}?{encoded}", self.api.base_url),
                Bytes::new(),
            )
        } else {
            (format!("{}{path}", self.api.base_url), Bytes::from(encoded))
        };
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header("authorization", format!("Bearer {}", self.api.secret_key))
            .header("accept", "application/json");
        if method != Method::GET {
            builder = builder.header("content-type", "application/x-www-form-urlencoded");
        }
        if let Some(key) = idempotency_key {
            builder = builder.header("idempotency-key", key);
        }
        let mut req = builder
            .body(Full::new(body))
            .map_err(|e| StripeError::Unavailable(format!("bad request: {e}")))?;
        let backstop = match deadline {
            Some(deadline) => {
                deadline.insert_into(req.extensions_mut());
                deadline.remaining().min(CALL_DEADLINE)
            }
            None => CALL_DEADLINE,
        };
        let (status, bytes) = http_client::fetch(self.client.clone(), req, backstop)
            .await
            .map_err(|e| {
                tracing::warn!(path, error = %e, "Stripe call failed");
                StripeError::Unavailable(e.to_string())
            })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| StripeError::Malformed(format!("{path}: {e}")));
        }
        let message = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_default();
        tracing::warn!(path, %status, message, "Stripe refused a call");
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Err(StripeError::Unavailable(format!("{status}")))
        } else {
            Err(StripeError::Refused(status, message))
        }
    }
}
