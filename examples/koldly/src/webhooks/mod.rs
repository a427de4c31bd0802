//! The mail provider's webhooks, signed like Mailgun's ([`signature`]) with
//! `MAIL_WEBHOOK_SIGNING_KEY`; without the key both answer 503.
//!
//! - `POST /api/webhooks/mail-events` ([`events`]): a hard bounce or a
//!   complaint suppresses the recipient for the account that sent the
//!   message and halts its follow-ups.
//! - `POST /api/webhooks/inbound` ([`inbound`]): a reply is matched to the
//!   message it answers by `In-Reply-To` / `References`, stored in the owner's
//!   inbox, halts the prospect's follow-ups and is categorised in the
//!   background.
//!
//! Both find the account through the Message-ID of a message koldly sent
//! (`campaign_sending_queue.message_id`), never through an address. Each
//! delivery's token is claimed in the transaction that does its work
//! ([`crate::db::webhook_tokens`]): a replay is refused (409) and changes
//! nothing; tokens older than twice the tolerance are purged as deliveries
//! arrive. The routes take no bearer token: the signature is their
//! authentication.

pub mod events;
pub mod inbound;
pub mod message_id;
pub mod signature;

use http::StatusCode;
use steadfast::Problem;
use utoipa_axum::{router::OpenApiRouter, routes};

use self::signature::{SignatureError, SigningKey};
use crate::{
    db::webhook_tokens,
    error::{ApiError, ApiResult},
    state::AppState,
};

/// The provider name webhook tokens are recorded under.
pub const PROVIDER: &str = "mailgun";

/// The problem type of a refused signature.
pub const SIGNATURE_PROBLEM: &str = "https://koldly.dev/problems/webhook-signature";

/// The webhook routes (no bearer token: they are signed), documented in the
/// OpenAPI document (tag `webhooks`).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(events::receive))
        .routes(routes!(inbound::receive))
}

steadfast::problem_responses! {
    /// What both webhooks refuse before any work.
    pub struct WebhookRefused {
        403 => "The signature does not match, is malformed, or its timestamp is more than 5 minutes from the server's clock.",
            types = [SIGNATURE_PROBLEM];
        409 => "This delivery's token was accepted before (a replay): nothing changed.",
            types = [SIGNATURE_PROBLEM];
        503 => "The webhooks are not configured (MAIL_WEBHOOK_SIGNING_KEY is not set), or the server is busy.";
    }
}

/// The configured signing key, or the 503 that says webhooks are off.
fn signing_key(state: &AppState) -> ApiResult<&SigningKey> {
    state
        .config
        .mail_webhook_signing_key
        .as_ref()
        .ok_or_else(|| {
            ApiError::from(
                Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                    .with_title("Webhooks not configured")
                    .with_detail(
                        "The mail webhooks are not configured on this server \
                     (MAIL_WEBHOOK_SIGNING_KEY is not set).",
                    ),
            )
        })
}

/// The answer to a refused delivery: 403 for a bad, stale or malformed
/// signature, 409 for a replayed token. It names neither key nor digest.
fn refused(err: SignatureError) -> ApiError {
    let status = match err {
        SignatureError::Replayed => StatusCode::CONFLICT,
        _ => StatusCode::FORBIDDEN,
    };
    tracing::warn!(reason = %err, "webhook delivery refused");
    ApiError::from(
        Problem::new(status)
            .with_type(SIGNATURE_PROBLEM)
            .with_title("Webhook signature refused")
            .with_detail(err.to_string()),
    )
}

/// Checks a delivery's signature fields against the key and koldly's clock.
fn verify(state: &AppState, timestamp: &str, token: &str, signature: &str) -> ApiResult<()> {
    let key = signing_key(state)?;
    signature::verify(key, timestamp, token, signature, state.now()).map_err(refused)
}

/// Forgets tokens that can no longer be replayed; a failure only delays it.
async fn purge_tokens(state: &AppState) {
    if let Err(err) = webhook_tokens::purge(&state.db.pool, state.now()).await {
        tracing::warn!(error = %err, "old webhook tokens were not purged");
    }
}

/// Claims `token` in `conn`'s transaction; a replay is refused.
async fn claim(conn: &mut sqlx::AnyConnection, state: &AppState, token: &str) -> ApiResult<()> {
    if webhook_tokens::claim(conn, PROVIDER, token, state.now()).await? {
        Ok(())
    } else {
        Err(refused(SignatureError::Replayed))
    }
}
