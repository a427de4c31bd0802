//! Email verification: send a link (replacing older ones), use it once.

use axum::{Json, extract::State, http::StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{InvalidToken, JsonRejected, extract::AuthUser, random_token, token_hash};
use steadfast::{Deadline, audit::AuditContext};

use crate::{
    audit::{self, AuthEvent},
    db::{
        tokens::{self, TokenKind},
        users,
    },
    error::{ApiError, ApiResult},
    mail::Message,
    openapi::{self, Idempotent, Problems, Unauthorized},
    state::AppState,
};

/// How long a verification link works.
pub const VERIFY_TTL_SECS: i64 = 24 * 3600;

steadfast::problem_responses! {
    /// Sending a verification link.
    pub struct SendVerificationProblems {
        409 => "The address is already verified.";
        502 => "The mail provider did not take the mail; try again shortly.";
    }
}

/// What `POST /api/auth/verify-email` answers.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct EmailVerified {
    /// For a person.
    message: String,
    /// Always `true`.
    email_verified: bool,
}

/// Sends a new verification link to the current user; older links stop working.
#[utoipa::path(
    post,
    path = "/send-verification",
    tag = "accounts",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A new link was sent; older ones stop working.", body = openapi::Message),
        Problems<(Unauthorized, SendVerificationProblems, Idempotent)>,
    )
)]
pub async fn send_verification(
    State(state): State<AppState>,
    audit: Option<AuditContext>,
    deadline: Option<Deadline>,
    AuthUser(user): AuthUser,
) -> ApiResult<Json<Value>> {
    if user.email_verified {
        return Err(ApiError::status(
            StatusCode::CONFLICT,
            "This email address is already verified.",
        ));
    }
    let token = random_token();
    let now = state.now();
    tokens::issue(
        &state.db.pool,
        TokenKind::EmailVerification,
        &user.id,
        &token_hash(&token),
        now + VERIFY_TTL_SECS,
        now,
    )
    .await?;
    let link = format!("{}/verify-email?token={token}", state.config.public_url);
    let body = format!(
        "Hello {},\n\nConfirm the address of your Koldly account by opening this link within 24 hours:\n\n{link}\n",
        user.name
    );
    state
        .mailer
        .send(
            Message {
                to: user.email.clone(),
                subject: "Confirm your email address".to_owned(),
                body,
                kind: "email_verification",
            },
            deadline,
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "verification mail not delivered");
            ApiError::status(
                StatusCode::BAD_GATEWAY,
                "The verification mail could not be sent. Try again shortly.",
            )
        })?;
    audit::note(
        &audit,
        AuthEvent::VerificationSent,
        Some(&user.id),
        Some(&user.email),
        None,
    );
    Ok(Json(json!({ "message": "A verification link was sent." })))
}

/// `POST /api/auth/verify-email`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct VerifyRequest {
    token: String,
}

/// Marks the address verified with a token; the token works once.
#[utoipa::path(
    post,
    path = "/verify-email",
    tag = "accounts",
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "The address is verified.", body = EmailVerified),
        Problems<(InvalidToken, JsonRejected)>,
    )
)]
pub async fn verify_email(
    State(state): State<AppState>,
    audit: Option<AuditContext>,
    Json(req): Json<VerifyRequest>,
) -> ApiResult<Json<Value>> {
    if req.token.len() > 128 {
        return Err(ApiError::invalid_token());
    }
    let now = state.now();
    let mut tx = state.db.pool.begin().await?;
    let Some(user_id) = tokens::consume(
        &mut *tx,
        TokenKind::EmailVerification,
        &token_hash(&req.token),
        now,
    )
    .await?
    else {
        return Err(ApiError::invalid_token());
    };
    users::mark_verified(&mut *tx, &user_id, now).await?;
    tx.commit().await?;
    audit::note(&audit, AuthEvent::EmailVerified, Some(&user_id), None, None);
    Ok(Json(
        json!({ "message": "Your email address is verified.", "email_verified": true }),
    ))
}
