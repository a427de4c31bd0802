//! Password reset: request a link, check it, use it once.

use axum::{
    Json,
    extract::{Path, State},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{normalize_email, password::check_policy, random_token, token_hash};
use steadfast::audit::AuditContext;

use crate::{
    audit::{self, AuthEvent},
    db::{
        tokens::{self, TokenKind},
        users,
    },
    error::{ApiError, ApiResult},
    mail::Message,
    request_meta::RequestMeta,
    state::AppState,
};

/// How long a reset link works.
pub const RESET_TTL_SECS: i64 = 3600;

/// `POST /api/auth/forgot-password`.
#[derive(Debug, Deserialize)]
pub struct ForgotRequest {
    email: String,
}

const FORGOT_REPLY: &str = "If an account exists for this address, a reset link is on its way.";

/// Always 200 for a well-formed address, whether or not the account exists.
pub async fn forgot_password(
    State(state): State<AppState>,
    meta: RequestMeta,
    audit: Option<AuditContext>,
    Json(req): Json<ForgotRequest>,
) -> ApiResult<Json<Value>> {
    if let Err(retry_after) = state.forgot_limiter.check(meta.ip) {
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
    let user = users::find_by_email(&state.db.pool, &email).await?;
    let reply = Json(json!({ "message": FORGOT_REPLY }));
    let Some(user) = user else {
        audit::note(
            &audit,
            AuthEvent::PasswordResetRequested,
            None,
            Some(&email),
            Some("unknown account"),
        );
        return Ok(reply);
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
    .await?;
    let link = format!("{}/reset-password?token={token}", state.config.public_url);
    let body = format!(
        "Hello {},\n\nSomeone asked to reset the password of your Koldly account. \
         Open this link within an hour to choose a new one:\n\n{link}\n\n\
         If it was not you, ignore this message; your password stays as it is.\n",
        user.name
    );
    let sent = state
        .mailer
        .send_later(Message {
            to: user.email.clone(),
            subject: "Reset your Koldly password".to_owned(),
            body,
            kind: "password_reset",
        })
        .await;
    let detail = sent
        .as_ref()
        .err()
        .map(|e| format!("mail not delivered: {e}"));
    audit::note(
        &audit,
        AuthEvent::PasswordResetRequested,
        Some(&user.id),
        Some(&email),
        detail.as_deref(),
    );
    Ok(reply)
}

/// `GET /api/auth/reset-password/verify/{token}`: 200 when the link still works.
pub async fn verify_token(
    State(state): State<AppState>,
    Path(token): Path<String>,
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
#[derive(Debug, Deserialize)]
pub struct ResetRequest {
    token: String,
    password: String,
}

/// Sets a new password with a reset token; the token works once.
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
