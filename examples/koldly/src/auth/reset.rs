//! Password reset: request a link, check it, use it once.

use axum::{Json, extract::State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    InvalidToken, JsonRejected, RateLimited, normalize_email, password::check_policy, random_token,
    token_hash,
};
use steadfast::audit::AuditContext;

use crate::{
    audit::{self, AuthEvent},
    db::{
        tokens::{self, TokenKind},
        users,
    },
    error::{ApiError, ApiResult},
    mail::Message,
    openapi::{self, IdempotencyKey, Idempotent, Problems},
    request_meta::RequestMeta,
    state::AppState,
};

/// How long a reset link works.
pub const RESET_TTL_SECS: i64 = 3600;

/// `POST /api/auth/forgot-password`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ForgotRequest {
    #[schema(value_type = crate::openapi::EmailAddress)]
    email: String,
}

const FORGOT_REPLY: &str = "If an account exists for this address, a reset link is on its way.";

/// Always 200 for a well-formed address, whether or not the account exists,
/// after the same work either way: the rate limit, the address check, and
/// handing the address to a background task. The per-account work — looking
/// the account up, storing a token, writing the mail — happens there, after
/// the answer, so the answer's timing tells nothing about the account.
#[utoipa::path(
    post,
    path = "/forgot-password",
    tag = "accounts",
    params(IdempotencyKey),
    request_body = ForgotRequest,
    responses(
        (status = 200, description = "The same answer whether or not the account exists.", body = openapi::Message),
        Problems<(JsonRejected, RateLimited, Idempotent)>,
    )
)]
pub async fn forgot_password(
    State(state): State<AppState>,
    meta: RequestMeta,
    audit: Option<AuditContext>,
    Json(req): Json<ForgotRequest>,
) -> ApiResult<Json<Value>> {
    if let Err(retry_after) = state.forgot_limiter.check(meta.ip).await {
        audit::note(
            &audit,
            AuthEvent::RateLimited,
            None,
            Some(&req.email),
            Some("forgot-password"),
        );
        return Err(ApiError::rate_limited(retry_after));
    }
    let email = normalize_email(&req.email)?;
    audit::note(
        &audit,
        AuthEvent::PasswordResetRequested,
        None,
        Some(&email),
        None,
    );
    let worker = state.clone();
    state.background.spawn(async move {
        if let Err(err) = send_reset_link(&worker, &email).await {
            tracing::error!(error = %err, "password reset link not issued");
        }
    });
    Ok(Json(json!({ "message": FORGOT_REPLY })))
}

/// The per-account half of forgot-password, after the answer: when an account
/// has this address, a new single-use token and a mail carrying its link.
async fn send_reset_link(state: &AppState, email: &str) -> Result<(), String> {
    let user = users::find_by_email(&state.db.pool, email)
        .await
        .map_err(|e| format!("account lookup: {e}"))?;
    let Some(user) = user else {
        tracing::debug!("password reset asked for an address without an account");
        return Ok(());
    };
    let token = random_token();
    let now = state.now();
    tokens::issue(
        &state.db.pool,
        TokenKind::PasswordReset,
        &user.id,
        &token_hash(&token),
        now + RESET_TTL_SECS,
        now,
    )
    .await
    .map_err(|e| format!("token write: {e}"))?;
    let link = format!("{}/reset-password?token={token}", state.config.public_url);
    let body = format!(
        "Hello {},\n\nSomeone asked to reset the password of your Koldly account. \
         Open this link within an hour to choose a new one:\n\n{link}\n\n\
         If it was not you, ignore this message; your password stays as it is.\n",
        user.name
    );
    state
        .mailer
        .send_later(Message {
            to: user.email.clone(),
            subject: "Reset your Koldly password".to_owned(),
            body,
            kind: "password_reset",
        })
        .await
        .map_err(|e| format!("mail: {e}"))?;
    tracing::info!(user_id = user.id, "password reset link issued");
    Ok(())
}

/// `POST /api/auth/reset-password/verify`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct VerifyTokenRequest {
    token: String,
}

/// What `POST /api/auth/reset-password/verify` answers.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TokenValid {
    /// Always `true` (an unusable token is a 400).
    valid: bool,
}

steadfast::problem_responses! {
    /// A new password that breaks the policy.
    pub struct WeakPassword {
        422 => "The password breaks the policy, or the JSON has the wrong shape.";
    }
}

/// `POST /api/auth/reset-password/verify` `{token}`: 200 when the link still
/// works. The token travels in the body, never in a path that logs record.
#[utoipa::path(
    post,
    path = "/reset-password/verify",
    tag = "accounts",
    request_body = VerifyTokenRequest,
    responses(
        (status = 200, description = "The reset link still works.", body = TokenValid),
        Problems<(InvalidToken, JsonRejected)>,
    )
)]
pub async fn verify_token(
    State(state): State<AppState>,
    Json(VerifyTokenRequest { token }): Json<VerifyTokenRequest>,
) -> ApiResult<Json<Value>> {
    if token.len() > 128 {
        return Err(ApiError::invalid_token());
    }
    match tokens::peek(
        &state.db.pool,
        TokenKind::PasswordReset,
        &token_hash(&token),
        state.now(),
    )
    .await?
    {
        Some(_) => Ok(Json(json!({ "valid": true }))),
        None => Err(ApiError::invalid_token()),
    }
}

/// `POST /api/auth/reset-password`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ResetRequest {
    token: String,
    #[schema(
        min_length = 10,
        max_length = 64,
        pattern = "[A-Za-z].*[0-9]|[0-9].*[A-Za-z]"
    )]
    password: String,
}

/// Sets a new password with a reset token; the token works once.
#[utoipa::path(
    post,
    path = "/reset-password",
    tag = "accounts",
    request_body = ResetRequest,
    responses(
        (status = 200, description = "The password was changed; every session ended.", body = openapi::Message),
        Problems<(InvalidToken, JsonRejected, WeakPassword)>,
    )
)]
pub async fn reset_password(
    State(state): State<AppState>,
    audit: Option<AuditContext>,
    Json(req): Json<ResetRequest>,
) -> ApiResult<Json<Value>> {
    check_policy(&req.password)?;
    if req.token.len() > 128 {
        return Err(ApiError::invalid_token());
    }
    let hash = state.passwords.hash(req.password).await?;
    let now = state.now();
    let mut tx = state.db.pool.begin().await?;
    let Some(user_id) = tokens::consume(
        &mut *tx,
        TokenKind::PasswordReset,
        &token_hash(&req.token),
        now,
    )
    .await?
    else {
        return Err(ApiError::invalid_token());
    };
    users::set_password(&mut *tx, &user_id, &hash, now).await?;
    tokens::revoke_all(&mut *tx, TokenKind::PasswordReset, &user_id, now).await?;
    tx.commit().await?;
    audit::note(
        &audit,
        AuthEvent::PasswordResetCompleted,
        Some(&user_id),
        None,
        None,
    );
    Ok(Json(
        json!({ "message": "Your password was changed. Log in with the new one." }),
    ))
}
