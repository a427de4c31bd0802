//! Senders: `POST /api/senders` (`email`, `name`, `reply_to`) mails a
//! verification link to the address; `POST /api/senders/verify` (`token`, no
//! login: whoever opens the mailbox proves it) marks it verified, once;
//! `GET /api/senders`, `DELETE /api/senders/{id}` (campaigns sending from it
//! are paused). A campaign starts only with a verified sender of its owner.

use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use steadfast::audit::AuditContext;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    audit::note_change,
    auth::{self, extract::AuthUser},
    db::{
        keyed_creates, outbox,
        senders::{self, Sender},
    },
    error::{ApiError, ApiResult},
    keyed::Keyed,
    mail::Message,
    openapi::{
        IdempotencyKey, Idempotent, InvalidBody, InvalidQuery, NotFound, Problems, Unauthorized,
    },
    pagination::{ListQuery, Page, PageParams},
    state::AppState,
    validation::{FieldErrors, JsonBody, PathId, Resource},
};

/// How long a sender's verification link works.
pub const SENDER_VERIFY_TTL_SECS: i64 = 24 * 3600;
/// Longest display name.
pub const NAME_MAX: usize = 100;

/// The sender routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(verify))
        .routes(routes!(remove))
}

/// What `{id}` names in the sender routes.
#[derive(Debug)]
pub struct SenderResource;

impl Resource for SenderResource {
    const NAME: &'static str = "sender";
}

/// `POST /api/senders`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSender {
    #[schema(value_type = crate::openapi::EmailAddress)]
    email: String,
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    name: String,
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::EmailAddress>)]
    reply_to: Option<String>,
}

/// `POST /api/senders`: 201 with the sender (unverified unless it already
/// was) and a verification link mailed to it (older links stop working).
#[utoipa::path(
    post,
    path = "/api/senders",
    tag = "sending",
    params(IdempotencyKey),
    security(("bearer" = [])),
    request_body = NewSender,
    responses(
        (status = 201, description = "The sender; a verification link was mailed to it unless it is verified.", body = Sender,
            headers(("location" = String, description = "`/api/senders/{id}`"))),
        Problems<(Unauthorized, InvalidBody, Idempotent)>,
    )
)]
pub async fn create(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    headers: http::HeaderMap,
    JsonBody(body): JsonBody<NewSender>,
) -> ApiResult<Response> {
    note_change(&audit, &user.id, "sender", "new", None);
    let mut errors = FieldErrors::new();
    let email = match auth::normalize_email(&body.email) {
        Ok(email) => Some(email),
        Err(_) => {
            errors.add("email", "must be a valid email address");
            None
        }
    };
    let name = errors.required_text("name", &body.name, NAME_MAX);
    let reply_to = match body
        .reply_to
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        None => None,
        Some(r) => match auth::normalize_email(r) {
            Ok(r) => Some(r),
            Err(_) => {
                errors.add("reply_to", "must be a valid email address");
                None
            }
        },
    };
    errors.finish()?;
    let email = email.unwrap_or_default();
    let now = state.now();
    // The sender, its link and the link's mail are written with the key's
    // record in one transaction: a retry the idempotency store forgot (a
    // crash after the commit) answers the sender without mailing again.
    let keyed = Keyed::new(&headers, "/api/senders");
    let mut tx = keyed_creates::begin(&state.db).await?;
    if let Some(id) = keyed.earlier(&mut tx, &user.id, "sender", now).await? {
        tx.commit().await?;
        let sender = senders::find(&state.db.pool, &user.id, &id)
            .await?
            .ok_or_else(|| ApiError::not_found(SenderResource::NAME))?;
        note_change(&audit, &user.id, "sender", &sender.id, None);
        return Ok(created(sender));
    }
    let sender =
        senders::upsert(&mut tx, &user.id, &email, &name, reply_to.as_deref(), now).await?;
    let mut mail = None;
    if !sender.verified {
        let token = auth::random_token();
        senders::issue_token(
            &mut tx,
            &sender.id,
            &auth::token_hash(&token),
            now + SENDER_VERIFY_TTL_SECS,
            now,
        )
        .await?;
        let link = format!("{}/verify-sender?token={token}", state.config.public_url);
        let body = format!(
            "Hello {name},\n\n{} asked to send email from this address with Koldly. \
             If that was you, confirm it by opening this link within 24 hours:\n\n{link}\n\n\
             If not, ignore this message: nothing will be sent from this address.\n",
            user.email
        );
        let message = Message {
            to: sender.email.clone(),
            subject: "Confirm this sender address".to_owned(),
            body,
            kind: "sender_verification",
        };
        let id = outbox::insert_in(
            &mut tx,
            &message.to,
            &message.subject,
            &message.body,
            message.kind,
            state.mailer.outbox_status(),
            now,
        )
        .await?;
        mail = Some((id, message));
    }
    keyed
        .record(&mut tx, &user.id, "sender", &sender.id, now)
        .await?;
    tx.commit().await?;
    if let Some((id, message)) = mail {
        state.mailer.deliver_stored_later(id, message);
    }
    note_change(&audit, &user.id, "sender", &sender.id, None);
    Ok(created(sender))
}

/// 201 with the sender and its `Location`.
fn created(sender: Sender) -> Response {
    let location = HeaderValue::try_from(format!("/api/senders/{}", sender.id))
        .expect("an id is a valid header value");
    (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(sender),
    )
        .into_response()
}

/// `GET /api/senders`: newest first, paginated.
#[utoipa::path(
    get,
    path = "/api/senders",
    tag = "sending",
    security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of the user's senders, newest first.", body = Page<Sender>),
        Problems<(Unauthorized, InvalidQuery)>,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    query: ListQuery,
) -> ApiResult<Json<Page<Sender>>> {
    let page = query.page()?;
    let rows = senders::list(&state.db.pool, &user.id, &page).await?;
    Ok(Json(Page::from_rows(rows, &page, Sender::cursor)))
}

/// `DELETE /api/senders/{id}`: 204; campaigns sending from it are paused.
#[utoipa::path(
    delete,
    path = "/api/senders/{id}",
    tag = "sending",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The sender's id (a UUID)")),
    responses(
        (status = 204, description = "Deleted; campaigns sending from it are paused."),
        Problems<(Unauthorized, NotFound)>,
    )
)]
pub async fn remove(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    PathId(id, _): PathId<SenderResource>,
) -> ApiResult<StatusCode> {
    note_change(&audit, &user.id, "sender", &id, None);
    if senders::delete(&state.db.pool, &user.id, &id, state.now()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(SenderResource::NAME))
    }
}

/// `POST /api/senders/verify`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct VerifySender {
    token: String,
}

/// What `POST /api/senders/verify` answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SenderVerified {
    /// What happened, for a person.
    pub message: String,
    /// The sender, verified.
    pub sender: Sender,
}

steadfast::problem_responses! {
    /// An unknown, used or expired link.
    pub struct InvalidLink {
        400 => "The link is unknown, was already used, or has expired.", types = [crate::error::types::INVALID_TOKEN];
    }
}

/// `POST /api/senders/verify` with the link's `token`: the sender is verified;
/// the link works once, for 24 hours.
#[utoipa::path(
    post,
    path = "/api/senders/verify",
    tag = "sending",
    params(IdempotencyKey),
    request_body = VerifySender,
    responses(
        (status = 200, description = "The sender is verified.", body = SenderVerified),
        Problems<(InvalidLink, InvalidBody, Idempotent)>,
    )
)]
pub async fn verify(
    State(state): State<AppState>,
    audit: Option<AuditContext>,
    JsonBody(req): JsonBody<VerifySender>,
) -> ApiResult<Json<SenderVerified>> {
    if req.token.len() > 128 {
        return Err(ApiError::invalid_token());
    }
    let Some((user_id, sender)) =
        senders::verify(&state.db.pool, &auth::token_hash(&req.token), state.now()).await?
    else {
        return Err(ApiError::invalid_token());
    };
    note_change(&audit, &user_id, "sender", &sender.id, None);
    Ok(Json(SenderVerified {
        message: "The sender address is verified.".to_owned(),
        sender,
    }))
}
