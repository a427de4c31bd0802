//! `POST /api/webhooks/mail-events`: Mailgun's event webhook, JSON
//! `{"signature": {timestamp, token, signature}, "event-data": {event,
//! severity, recipient, message: {headers: {"message-id"}}, ...}}`.
//!
//! - `failed` with severity `permanent` (a hard bounce; also the legacy
//!   `bounced`) and `complained`: the address of the message's recipient goes
//!   on the suppression list of the account that sent it (reason `bounced` or
//!   `complained`), which cancels that account's queued messages to it (the
//!   prospect's follow-ups included), and the prospect is marked `bounced` or
//!   `unsubscribed`; all in the transaction that claims the token.
//! - `failed` with severity `temporary`, and every other event: nothing.
//! - A Message-ID koldly never sent: 200, nothing stored.
//!
//! The address suppressed is the one koldly sent the message to (the
//! prospect's), not the event's `recipient` field: a delivery can only
//! suppress an address its account actually wrote to.

use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{WebhookRefused, claim, message_id, purge_tokens, verify};
use crate::{
    db::{
        replies::{self, ProspectOutcome},
        suppressions,
    },
    error::ApiResult,
    openapi::{InvalidBody, Problems},
    state::AppState,
    validation::{FieldErrors, JsonBody},
};

/// The signature block.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SignatureBlock {
    /// Unix seconds, as a string (or a number).
    #[schema(value_type = String)]
    timestamp: Value,
    /// A random token, accepted once.
    token: String,
    /// Hex HMAC-SHA256 of `timestamp` + `token` with the signing key.
    signature: String,
}

/// The event webhook's body (other fields are ignored).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct EventWebhook {
    /// The delivery's signature.
    signature: SignatureBlock,
    /// The event.
    #[serde(rename = "event-data")]
    event_data: EventData,
}

/// Mailgun's `event-data` (the fields koldly reads).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct EventData {
    /// `failed`, `complained`, `delivered`, `opened`...
    event: String,
    /// For `failed`: `permanent` or `temporary`.
    #[serde(default)]
    severity: Option<String>,
    /// The message the event is about.
    #[serde(default)]
    message: Option<EventMessage>,
}

/// The message an event is about.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct EventMessage {
    /// Its headers.
    #[serde(default)]
    headers: Option<EventHeaders>,
}

/// The headers of the message an event is about.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct EventHeaders {
    /// Its Message-ID, as koldly sent it.
    #[serde(rename = "message-id", default)]
    message_id: Option<String>,
}

/// What koldly did with an event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventOutcome {
    /// `suppressed`, `ignored` (an event koldly does not act on) or
    /// `unknown_message`.
    pub result: &'static str,
}

/// What an event asks of koldly.
enum Action {
    Suppress {
        reason: &'static str,
        outcome: ProspectOutcome,
    },
    Ignore,
}

fn action(event: &EventData) -> Action {
    match (event.event.as_str(), event.severity.as_deref()) {
        ("failed", Some("permanent")) | ("bounced", _) => Action::Suppress {
            reason: "bounced",
            outcome: ProspectOutcome::Bounced,
        },
        ("complained", _) => Action::Suppress {
            reason: "complained",
            outcome: ProspectOutcome::Unsubscribed,
        },
        _ => Action::Ignore,
    }
}

/// `POST /api/webhooks/mail-events`.
#[utoipa::path(
    operation_id = "receive_mail_events",
    post,
    path = "/api/webhooks/mail-events",
    tag = "webhooks",
    request_body = EventWebhook,
    responses(
        (status = 200, description = "The event was handled (or ignored).", body = EventOutcome),
        Problems<(InvalidBody, WebhookRefused)>,
    )
)]
pub async fn receive(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<EventWebhook>,
) -> ApiResult<Json<EventOutcome>> {
    let timestamp = match &body.signature.timestamp {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    verify(
        &state,
        &timestamp,
        &body.signature.token,
        &body.signature.signature,
    )?;
    let event = &body.event_data;
    let ids = event
        .message
        .as_ref()
        .and_then(|m| m.headers.as_ref())
        .and_then(|h| h.message_id.as_deref())
        .map(message_id::parse)
        .unwrap_or_default();
    let mut errors = FieldErrors::new();
    if matches!(action(event), Action::Suppress { .. }) && ids.is_empty() {
        errors.add(
            "event-data.message.headers.message-id",
            "must name the message the event is about",
        );
    }
    errors.finish()?;
    let sent = match (action(event), ids.first()) {
        (Action::Suppress { .. }, Some(id)) => replies::find_sent(&state.db.pool, id).await?,
        _ => None,
    };
    let now = state.now();
    let mut tx = state.db.pool.begin().await?;
    claim(&mut tx, &state, &body.signature.token).await?;
    let result = match (action(event), &sent) {
        (Action::Ignore, _) => "ignored",
        (Action::Suppress { .. }, None) => "unknown_message",
        (Action::Suppress { reason, outcome }, Some(sent)) => {
            suppressions::add_in(&mut tx, &sent.user_id, &sent.prospect_email, reason, now).await?;
            replies::mark_prospect(&mut tx, &sent.user_id, &sent.prospect_id, outcome, now).await?;
            "suppressed"
        }
    };
    tx.commit().await?;
    purge_tokens(&state).await;
    tracing::info!(event = event.event, result, "mail event");
    Ok(Json(EventOutcome { result }))
}
