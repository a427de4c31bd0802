//! `POST /api/webhooks/inbound`: a reply, form-encoded as a Mailgun route
//! posts it (`application/x-www-form-urlencoded`: `sender`, `from`,
//! `recipient`, `subject`, `body-plain`, `stripped-text`, `Message-Id`,
//! `In-Reply-To`, `References`, `timestamp`, `token`, `signature`; the
//! threading headers are also read from `message-headers` when they are not
//! fields of their own).
//!
//! 1. The signature is checked (403; 503 without a key).
//! 2. The reply is matched to the message it answers: each Message-ID of its
//!    `In-Reply-To`, then of its `References` (newest first), against
//!    `campaign_sending_queue.message_id`. The sender's address plays no part.
//! 3. In one transaction: the token is claimed (409 on a replay); a match is
//!    stored ([`crate::db::replies::store`]): the reply, the owner's inbox row,
//!    the prospect marked `replied`, its queued messages cancelled with reason
//!    `replied`. A reply whose `Message-Id` was stored before changes nothing.
//! 4. A new reply is categorised by an `inbox.categorize` job. If queueing the
//!    job fails the reply stays `uncategorized` (logged; `POST
//!    /api/inbox/replies/{id}/categorize` files it).
//!
//! A reply that matches nothing is stored nowhere and answered 200
//! (`{"stored": false}`), so the provider does not retry it.

use axum::{Json, extract::State};
use http::StatusCode;
use serde::Serialize;

use super::{WebhookRefused, claim, message_id, purge_tokens, verify};
use crate::{
    db::replies::{self, NewReply, SentMessage, Stored},
    error::{ApiError, ApiResult},
    inbox::jobs::{CATEGORIZE, ReplyPayload},
    openapi::Problems,
    state::AppState,
    validation::{FieldErrors, body_bytes, check_chars, has_content_type, is_plausible_email},
};

/// The longest subject kept, in characters.
pub const MAX_SUBJECT_CHARS: usize = 2_000;

/// What koldly did with a reply.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InboundOutcome {
    /// Whether the reply is (now, or already was) in an inbox.
    pub stored: bool,
    /// True when this delivery repeated one stored before.
    pub duplicate: bool,
}

/// The form a Mailgun route posts (the fields koldly reads; documentation
/// only: the handler reads the form itself).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct InboundForm {
    /// The envelope sender's address.
    sender: Option<String>,
    /// The `From` header (`Name <address>`).
    from: Option<String>,
    /// The address the reply was sent to.
    recipient: Option<String>,
    /// The reply's subject.
    subject: Option<String>,
    /// The reply's text.
    #[schema(rename = "body-plain")]
    body_plain: Option<String>,
    /// The reply's text without the quoted history.
    #[schema(rename = "stripped-text")]
    stripped_text: Option<String>,
    /// The reply's own Message-ID (the deduplication key).
    #[schema(rename = "Message-Id")]
    message_id: String,
    /// The Message-ID it answers.
    #[schema(rename = "In-Reply-To")]
    in_reply_to: Option<String>,
    /// The thread's Message-IDs, oldest first.
    #[schema(rename = "References")]
    references: Option<String>,
    /// Unix seconds.
    timestamp: String,
    /// A random token, accepted once.
    token: String,
    /// Hex HMAC-SHA256 of `timestamp` + `token` with the signing key.
    signature: String,
}

steadfast::problem_responses! {
    /// What the inbound webhook refuses in a signed delivery.
    pub struct InvalidForm {
        415 => "The body is not `application/x-www-form-urlencoded`.";
        422 => "A field is missing or broken (`Message-Id`, `sender`, `subject`, `body-plain`); `errors` names it.",
            types = [crate::error::types::VALIDATION];
    }
}

/// The posted form's fields.
struct Form(Vec<(String, String)>);

impl Form {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.trim().is_empty())
    }

    /// A header: its own field, else its entry in `message-headers` (a JSON
    /// list of `[name, value]` pairs), names compared case-insensitively.
    fn header(&self, name: &str) -> Option<String> {
        if let Some(value) = self
            .0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.trim().is_empty())
        {
            return Some(value.to_owned());
        }
        let headers: Vec<(String, String)> =
            serde_json::from_str(self.get("message-headers")?).ok()?;
        headers
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// The address in a `From` value (`Ann <ann@x.io>` or `ann@x.io`).
fn address_in(from: &str) -> Option<String> {
    let candidate = match (from.rfind('<'), from.rfind('>')) {
        (Some(open), Some(close)) if open < close => &from[open + 1..close],
        _ => from,
    };
    let candidate = candidate.trim();
    is_plausible_email(candidate).then(|| candidate.to_owned())
}

/// `POST /api/webhooks/inbound`.
#[utoipa::path(
    operation_id = "receive_inbound",
    post,
    path = "/api/webhooks/inbound",
    tag = "webhooks",
    request_body(content = InboundForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The reply was stored, was a duplicate, or matched no message (stored nowhere).", body = InboundOutcome),
        Problems<(InvalidForm, WebhookRefused)>,
    )
)]
pub async fn receive(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> ApiResult<Json<InboundOutcome>> {
    if !has_content_type(request.headers(), "application/x-www-form-urlencoded") {
        return Err(ApiError::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Post the reply as `application/x-www-form-urlencoded`, as a Mailgun route does \
             (multipart bodies with attachments are not accepted).",
        ));
    }
    let bytes = body_bytes(request, &state).await?;
    let form = Form(
        form_urlencoded::parse(&bytes)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    );
    verify(
        &state,
        form.get("timestamp").unwrap_or(""),
        form.get("token").unwrap_or(""),
        form.get("signature").unwrap_or(""),
    )?;

    let mut errors = FieldErrors::new();
    let provider_id = form
        .header("Message-Id")
        .map(|v| message_id::parse(&v))
        .and_then(|ids| ids.into_iter().next());
    if provider_id.is_none() {
        errors.add("Message-Id", "must hold the reply's Message-ID");
    }
    let from_email = form
        .get("sender")
        .and_then(address_in)
        .or_else(|| form.get("from").and_then(address_in));
    if from_email.is_none() {
        errors.add("sender", "must be the address the reply came from");
    }
    let to_email = form.get("recipient").and_then(address_in);
    let subject = form.get("subject").map(str::trim).map(str::to_owned);
    if let Some(subject) = &subject
        && let Err(message) = check_chars(subject, MAX_SUBJECT_CHARS)
    {
        errors.add("subject", message);
    }
    let body = form
        .get("stripped-text")
        .or_else(|| form.get("body-plain"))
        .unwrap_or("")
        .to_owned();
    if let Err(message) = check_chars(&body, usize::MAX) {
        errors.add("body-plain", message);
    }
    let in_reply_to = form.header("In-Reply-To");
    let references = form.header("References");
    errors.finish()?;
    let (Some(provider_id), Some(from_email)) = (provider_id, from_email) else {
        unreachable!("checked above");
    };

    let candidates = message_id::candidates(in_reply_to.as_deref(), references.as_deref());
    let mut answers: Option<SentMessage> = None;
    for id in &candidates {
        if let Some(sent) = replies::find_sent(&state.db.pool, id).await? {
            answers = Some(sent);
            break;
        }
    }

    let now = state.now();
    let mut tx = state.db.pool.begin().await?;
    claim(&mut tx, &state, form.get("token").unwrap_or("")).await?;
    let stored = match &answers {
        None => None,
        Some(sent) => Some(
            replies::store(
                &mut tx,
                &NewReply {
                    answers: sent,
                    provider_message_id: &provider_id,
                    in_reply_to: in_reply_to.as_deref().map(str::trim),
                    from_email: &from_email,
                    to_email: to_email.as_deref(),
                    subject: subject.as_deref(),
                    body: &body,
                },
                now,
            )
            .await?,
        ),
    };
    tx.commit().await?;
    purge_tokens(&state).await;

    let outcome = match (stored, &answers) {
        (
            Some(Stored::New {
                inbox_id,
                cancelled,
            }),
            Some(sent),
        ) => {
            tracing::info!(inbox_id, cancelled, "reply stored");
            crate::analytics::record(
                &state,
                crate::analytics::Event::new(
                    &sent.user_id,
                    crate::analytics::EventKind::ReplyReceived,
                )
                .campaign(&sent.campaign_id)
                .prospect(&sent.prospect_id),
            );
            let payload = ReplyPayload {
                reply_id: inbox_id,
                force: false,
            };
            if let Err(err) = state
                .jobs
                .enqueue(&sent.user_id, CATEGORIZE, &payload)
                .await
            {
                tracing::error!(error = %err, "the reply's categorisation was not queued");
            }
            InboundOutcome {
                stored: true,
                duplicate: false,
            }
        }
        (Some(Stored::Duplicate), _) => InboundOutcome {
            stored: true,
            duplicate: true,
        },
        _ => {
            tracing::info!(
                candidates = candidates.len(),
                "a reply answering no message of koldly's was dropped"
            );
            InboundOutcome {
                stored: false,
                duplicate: false,
            }
        }
    };
    Ok(Json(outcome))
}
