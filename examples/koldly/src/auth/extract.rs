//! The authenticated user of a request (`Authorization: Bearer <jwt>`).

use axum::extract::FromRequestParts;
use http::{header, request::Parts};

use crate::{
    db::users::{self, User},
    error::ApiError,
    state::AppState,
};

/// The user a valid session token names. Every failure is the same 401.
#[derive(Debug, Clone)]
pub struct AuthUser(pub User);

const UNAUTHENTICATED: &str = "A valid bearer token is required.";

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then_some(token.trim())
            })
            .ok_or_else(|| ApiError::unauthorized(UNAUTHENTICATED))?;
        let claims = state
            .jwt
            .verify(token)
            .ok_or_else(|| ApiError::unauthorized(UNAUTHENTICATED))?;
        let user = users::find_by_id(&state.db.pool, &claims.sub)
            .await?
            .ok_or_else(|| ApiError::unauthorized(UNAUTHENTICATED))?;
        Ok(Self(user))
    }
}
