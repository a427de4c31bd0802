//! The authenticated user of a request (`Authorization: Bearer <jwt>`).
//!
//! One parser and one check for every place that needs to know who is
//! calling: the bearer token is read with axum-extra's typed
//! `Authorization<Bearer>` (the scheme compared case-insensitively, as RFC 9110
//! says), verified ([`JwtKeys::verify`](super::jwt::JwtKeys::verify)), and its
//! session version compared with the user's, in the one database lookup an
//! authenticated request makes. [`resolve_session`] does this before the
//! idempotency layer, so its scope is the verified user; [`AuthUser`] then
//! reuses that result instead of looking the user up again.

use axum::{
    extract::{FromRequestParts, Request, State},
    middleware::Next,
    response::Response,
};
use axum_extra::headers::{Authorization, HeaderMapExt, authorization::Bearer};
use http::{HeaderMap, request::Parts};

use crate::{
    db::users::{self, User},
    error::ApiError,
    state::AppState,
};

/// The user a valid session token names. Every failure is the same 401.
#[derive(Debug, Clone)]
pub struct AuthUser(pub User);

const UNAUTHENTICATED: &str = "A valid bearer token is required.";

/// The bearer token of `headers`, parsed the one way koldly parses it.
pub fn bearer(headers: &HeaderMap) -> Option<Authorization<Bearer>> {
    headers.typed_get::<Authorization<Bearer>>()
}

/// The user of the request's bearer token: signature, algorithm, issuer,
/// audience, times and session version checked.
pub async fn authenticate(headers: &HeaderMap, state: &AppState) -> Result<User, ApiError> {
    let unauthenticated = || ApiError::unauthorized(UNAUTHENTICATED);
    let header = bearer(headers).ok_or_else(unauthenticated)?;
    let claims = state
        .jwt
        .verify(header.token(), state.now())
        .ok_or_else(unauthenticated)?;
    let user = users::find_by_id(&state.db.pool, &claims.sub)
        .await?
        .ok_or_else(unauthenticated)?;
    if claims.sv != user.session_version {
        tracing::debug!(
            user_id = user.id,
            "session ended by a password change or logout"
        );
        return Err(unauthenticated());
    }
    Ok(user)
}

/// Middleware: when the request carries a valid session, puts its [`AuthUser`]
/// in the request's extensions (for the idempotency scope and the handler);
/// otherwise passes the request on untouched, for the handler to refuse.
pub async fn resolve_session(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    if bearer(req.headers()).is_some() {
        match authenticate(req.headers(), &state).await {
            Ok(user) => {
                req.extensions_mut().insert(AuthUser(user));
            }
            Err(err) if err.0.status().is_server_error() => {
                return axum::response::IntoResponse::into_response(err);
            }
            Err(_) => {}
        }
    }
    next.run(req).await
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(user) = parts.extensions.get::<AuthUser>() {
            return Ok(user.clone());
        }
        authenticate(&parts.headers, state).await.map(Self)
    }
}
