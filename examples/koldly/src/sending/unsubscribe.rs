//! One-click unsubscribe (RFC 8058): every message carries
//! `List-Unsubscribe: <{PUBLIC_URL}/u/{token}>` and
//! `List-Unsubscribe-Post: List-Unsubscribe=One-Click`. `GET` and `POST
//! /u/{token}`, without login, put the address on the sending account's
//! suppression list (which cancels its queued messages to it) and halt the
//! follow-ups of its prospects with that address.
//!
//! The token is `base64url(user_id "\n" email) "." base64url(HMAC-SHA256)`
//! under a server secret drawn once per database (`server_secrets`,
//! `unsubscribe_secret`): it cannot be forged or altered, and it outlives the
//! message and campaign it came in. Every request gets the same answer,
//! whether the token was valid, forged or unknown.
//!
//! The token is a secret in a path: the stack moves it out of the path into
//! the request's extensions ([`split_secret_path`]) before any layer records
//! the path, so logs, traces and audit events show `/u/REDACTED`.

use axum::{
    Extension,
    extract::State,
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use http::{StatusCode, header};
use sha2::Sha256;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth,
    db::{Db, sequences, server_secrets, suppressions},
    state::AppState,
};

type HmacSha256 = Hmac<Sha256>;

/// Where unsubscribe links point.
pub const PATH_PREFIX: &str = "/u/";

/// The routes (no login).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(unsubscribe_get, unsubscribe_post))
}

/// The token taken out of a `/u/{token}` path by the stack.
#[derive(Debug, Clone)]
pub struct UnsubscribeToken(pub String);

/// For a `/u/{token}` path: the path with the token replaced by `REDACTED`,
/// and the token.
pub fn split_secret_path(path: &str) -> Option<(String, UnsubscribeToken)> {
    let token = path.strip_prefix(PATH_PREFIX)?;
    (!token.is_empty() && !token.contains('/')).then(|| {
        (
            format!("{PATH_PREFIX}REDACTED"),
            UnsubscribeToken(token.to_owned()),
        )
    })
}

/// The secret unsubscribe tokens are signed with.
pub async fn secret(db: &Db, now: i64) -> Result<Vec<u8>, sqlx::Error> {
    server_secrets::get_or_create(&db.pool, "unsubscribe_secret", &auth::random_token(), now)
        .await
        .map(String::into_bytes)
}

fn mac(secret: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(b"koldly unsubscribe v1\0");
    mac
}

/// The token for `email` on `user_id`'s list.
pub fn sign(secret: &[u8], user_id: &str, email: &str) -> String {
    let payload = format!("{user_id}\n{}", email.trim().to_lowercase());
    let mut mac = mac(secret);
    mac.update(payload.as_bytes());
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

/// The `(user_id, email)` a token was signed for; `None` for anything else
/// (the signature is compared in constant time).
pub fn verify(secret: &[u8], token: &str) -> Option<(String, String)> {
    if token.len() > 600 {
        return None;
    }
    let (payload, signature) = token.split_once('.')?;
    let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    let mut mac = mac(secret);
    mac.update(&payload);
    mac.verify_slice(&signature).ok()?;
    let payload = String::from_utf8(payload).ok()?;
    let (user_id, email) = payload.split_once('\n')?;
    Some((user_id.to_owned(), email.to_owned()))
}

const ANSWER: &str = "You are unsubscribed: no more email will be sent to this address from this sender's campaigns.\n";

/// `GET /u/{token}`: see [`unsubscribe`].
#[utoipa::path(
    get,
    path = "/u/{token}",
    tag = "sending",
    params(("token" = String, Path, description = "The signed token of the message's `List-Unsubscribe` link")),
    responses(
        (status = 200, description = "The same answer for every token, valid or not.", body = String, content_type = "text/plain"),
        (status = 503, description = "The unsubscribe could not be recorded; retry.", body = String, content_type = "text/plain"),
    )
)]
async fn unsubscribe_get(
    state: State<AppState>,
    token: Option<Extension<UnsubscribeToken>>,
) -> Response {
    unsubscribe(state, token).await
}

/// `POST /u/{token}` (RFC 8058 one-click, `List-Unsubscribe=One-Click`): see
/// [`unsubscribe`].
#[utoipa::path(
    post,
    path = "/u/{token}",
    tag = "sending",
    params(("token" = String, Path, description = "The signed token of the message's `List-Unsubscribe` link")),
    responses(
        (status = 200, description = "The same answer for every token, valid or not.", body = String, content_type = "text/plain"),
        (status = 503, description = "The unsubscribe could not be recorded; retry.", body = String, content_type = "text/plain"),
    )
)]
async fn unsubscribe_post(
    state: State<AppState>,
    token: Option<Extension<UnsubscribeToken>>,
) -> Response {
    unsubscribe(state, token).await
}

/// `GET` / `POST /u/{token}`: always 200 with the same text.
async fn unsubscribe(
    State(state): State<AppState>,
    token: Option<Extension<UnsubscribeToken>>,
) -> Response {
    if let Some(Extension(UnsubscribeToken(token))) = token
        && let Err(e) = apply(&state, &token).await
    {
        tracing::error!(error = %e, "unsubscribe not recorded");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "60")],
            "The request could not be recorded. Try again in a minute.\n",
        )
            .into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        ANSWER,
    )
        .into_response()
}

async fn apply(state: &AppState, token: &str) -> Result<(), sqlx::Error> {
    let now = state.now();
    let secret = secret(&state.db, now).await?;
    let Some((user_id, email)) = verify(&secret, token) else {
        return Ok(());
    };
    let exists: Option<String> = crate::db::users::find_by_id(&state.db.pool, &user_id)
        .await?
        .map(|u| u.id);
    if exists.is_none() {
        return Ok(());
    }
    let suppressed =
        suppressions::add(&state.db.pool, &user_id, &email, "unsubscribed", now).await?;
    let halted =
        sequences::halt_address(&state.db.pool, &user_id, &email, "unsubscribed", now).await?;
    tracing::info!(
        user_id,
        new = suppressed.new,
        cancelled = suppressed.cancelled,
        halted,
        "address unsubscribed"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_resist_forgery() {
        let token = sign(b"secret", "user-1", "Lead@Example.com");
        assert_eq!(
            verify(b"secret", &token),
            Some(("user-1".to_owned(), "lead@example.com".to_owned()))
        );
        assert_eq!(verify(b"other secret", &token), None);
        // Another address under the same signature.
        let (_, sig) = token.split_once('.').unwrap();
        let forged = format!(
            "{}.{sig}",
            URL_SAFE_NO_PAD.encode("user-2\nlead@example.com")
        );
        assert_eq!(verify(b"secret", &forged), None);
        assert_eq!(verify(b"secret", "garbage"), None);
        assert_eq!(verify(b"secret", ""), None);
    }

    #[test]
    fn the_token_leaves_the_path() {
        let (path, UnsubscribeToken(token)) = split_secret_path("/u/abc.def").unwrap();
        assert_eq!((path.as_str(), token.as_str()), ("/u/REDACTED", "abc.def"));
        assert!(split_secret_path("/u/").is_none());
        assert!(split_secret_path("/api/u/x").is_none());
    }
}
