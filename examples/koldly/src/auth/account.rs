//! Signup, login, the current user and the sign-in configuration.

use axum::{Json, extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{extract::AuthUser, normalize_email, password::check_policy};
use steadfast::audit::AuditContext;

use super::JsonRejected;
use super::RateLimited;
use crate::{
    audit::{self, AuthEvent},
    db::users::{self, NewUser, User},
    error::{ApiError, ApiResult, types},
    openapi::{IdempotencyKey, Idempotent, Message, Problems, Unauthorized},
    request_meta::RequestMeta,
    state::AppState,
};
use steadfast::Problem;

/// `POST /api/auth/signup`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SignupRequest {
    #[schema(value_type = crate::openapi::EmailAddress)]
    email: String,
    #[schema(
        min_length = 10,
        max_length = 64,
        pattern = "[A-Za-z].*[0-9]|[0-9].*[A-Za-z]"
    )]
    password: String,
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    name: String,
}

/// A session: the token and its user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Session {
    /// The JWT.
    pub token: String,
    token_type: &'static str,
    expires_in: u64,
    user: User,
}

pub(crate) fn session(state: &AppState, user: User) -> Session {
    Session {
        token: state.jwt.issue(&user.id, user.session_version, state.now()),
        token_type: "Bearer",
        expires_in: state.config.jwt_ttl.as_secs(),
        user,
    }
}

fn email_taken() -> ApiError {
    ApiError::from(
        Problem::new(StatusCode::CONFLICT)
            .with_type(types::EMAIL_TAKEN)
            .with_title("Email already registered")
            .with_detail(
                "An account with this email address exists. Log in or reset the password.",
            ),
    )
}

/// Creates an account; 201 with a session.
#[utoipa::path(
    post,
    path = "/signup",
    tag = "accounts",
    params(IdempotencyKey),
    request_body = SignupRequest,
    responses(
        (status = 201, description = "The account, signed in.", body = Session),
        Problems<(JsonRejected, EmailTaken, Idempotent)>,
    )
)]
pub async fn signup(
    State(state): State<AppState>,
    audit: Option<AuditContext>,
    Json(req): Json<SignupRequest>,
) -> ApiResult<(StatusCode, Json<Session>)> {
    let email = normalize_email(&req.email)?;
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::validation("name must be 1 to 100 characters"));
    }
    check_policy(&req.password)?;
    if users::find_by_email(&state.db.pool, &email)
        .await?
        .is_some()
    {
        return Err(email_taken());
    }
    let hash = state.passwords.hash(req.password).await?;
    let new = NewUser {
        email: &email,
        name,
        password_hash: Some(&hash),
        google_id: None,
        email_verified: false,
    };
    let user = match users::insert(&state.db.pool, new, state.now()).await {
        Ok(user) => user,
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(email_taken()),
        Err(e) => return Err(e.into()),
    };
    audit::note(
        &audit,
        AuthEvent::Signup,
        Some(&user.id),
        Some(&email),
        None,
    );
    crate::analytics::record(
        &state,
        crate::analytics::Event::new(user.id.clone(), crate::analytics::EventKind::Signup),
    );
    Ok((StatusCode::CREATED, Json(session(&state, user))))
}

/// `POST /api/auth/login`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    email: String,
    password: String,
}

/// Exchanges email and password for a session. Every failure is the same 401.
#[utoipa::path(
    post,
    path = "/login",
    tag = "accounts",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "A session.", body = Session),
        Problems<(JsonRejected, Unauthorized, RateLimited)>,
    )
)]
pub async fn login(
    State(state): State<AppState>,
    meta: RequestMeta,
    audit: Option<AuditContext>,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Json<Session>> {
    if let Err(retry_after) = state.login_limiter.check(meta.ip).await {
        audit::note(
            &audit,
            AuthEvent::RateLimited,
            None,
            Some(&req.email),
            Some("login"),
        );
        return Err(ApiError::rate_limited(retry_after));
    }
    let email = req.email.trim().to_lowercase();
    let user = if email.len() <= 254 && req.password.len() <= super::password::MAX_PASSWORD_LEN {
        users::find_by_email(&state.db.pool, &email).await?
    } else {
        None
    };
    let hash = user.as_ref().and_then(|u| u.password_hash.clone());
    let password = if req.password.len() <= super::password::MAX_PASSWORD_LEN {
        req.password
    } else {
        String::new()
    };
    if state.passwords.verify(password, hash).await {
        let user = user.expect("a verified password has a user");
        audit::note(
            &audit,
            AuthEvent::LoginSuccess,
            Some(&user.id),
            Some(&email),
            None,
        );
        crate::analytics::record(
            &state,
            crate::analytics::Event::new(user.id.clone(), crate::analytics::EventKind::Login),
        );
        return Ok(Json(session(&state, user)));
    }
    let reason = match &user {
        None => "unknown account",
        Some(u) if u.password_hash.is_none() => "account has no password (OAuth)",
        Some(_) => "wrong password",
    };
    audit::note(
        &audit,
        AuthEvent::LoginFailure,
        user.as_ref().map(|u| u.id.as_str()),
        Some(&email),
        Some(reason),
    );
    Err(ApiError::unauthorized(
        "The email or password is incorrect.",
    ))
}

/// What `GET /api/auth/me` answers.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Me {
    /// The signed-in user.
    user: User,
}

/// What `GET /api/auth/config` answers.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SignInConfig {
    /// Email and password sign-in (always).
    password: bool,
    /// Whether Sign in with Google is configured.
    google: bool,
    /// Email verification (always).
    email_verification: bool,
    /// Password reset (always).
    password_reset: bool,
    /// `postmark`, or `outbox` when mail is only kept in the database.
    #[schema(pattern = "^(postmark|outbox)$")]
    mail_provider: String,
}

steadfast::problem_responses! {
    /// Signup's own problems.
    pub struct EmailTaken {
        409 => "An account with this email address exists.", types = [types::EMAIL_TAKEN];
    }
}

/// The current user.
#[utoipa::path(
    get,
    path = "/me",
    tag = "accounts",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The signed-in user.", body = Me),
        Problems<Unauthorized>,
    )
)]
pub async fn me(AuthUser(user): AuthUser) -> Json<Value> {
    Json(json!({ "user": user }))
}

/// `POST /api/auth/logout-all`: ends every session of the current user,
/// this one included.
#[utoipa::path(
    post,
    path = "/logout-all",
    tag = "accounts",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every session of the account has ended.", body = Message),
        Problems<Unauthorized>,
    )
)]
pub async fn logout_all(
    State(state): State<AppState>,
    audit: Option<AuditContext>,
    AuthUser(user): AuthUser,
) -> ApiResult<Json<Value>> {
    users::end_sessions(&state.db.pool, &user.id, state.now()).await?;
    audit::note(
        &audit,
        AuthEvent::LogoutAll,
        Some(&user.id),
        Some(&user.email),
        None,
    );
    Ok(Json(
        json!({ "message": "Every session of this account has ended. Log in again." }),
    ))
}

/// Which sign-in methods this server offers.
#[utoipa::path(
    get,
    path = "/config",
    tag = "accounts",
    responses((status = 200, description = "The sign-in methods offered.", body = SignInConfig))
)]
pub async fn config(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "password": true,
        "google": state.config.google.is_some(),
        "email_verification": true,
        "password_reset": true,
        "mail_provider": if state.config.postmark.is_some() { "postmark" } else { "outbox" },
    }))
}
