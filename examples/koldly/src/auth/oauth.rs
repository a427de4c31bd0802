//! Sign in with Google (OAuth 2.0 authorization code flow with PKCE S256).
//!
//! `GET /auth/google` redirects to the provider with a random `state` and a
//! PKCE challenge; the state and the verifier travel in a short-lived HttpOnly
//! cookie scoped to `/auth/google`. `GET /auth/google/callback` checks the
//! state against the cookie, exchanges the code (with the verifier), reads the
//! userinfo, then links the Google account to an existing account with the
//! same address (only when Google says the address is verified) or creates a
//! verified account.
//!
//! The session token never travels in a query string: the callback redirects
//! to `PUBLIC_URL/auth/callback#token=<jwt>`. A URL fragment is not sent to any
//! server, is not written to access logs and does not leak through `Referer`;
//! the front-end reads it and removes it from the address bar.

use std::time::Duration;

use axum::{
    extract::{Query, State},
    response::{IntoResponse, Redirect, Response},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use http_body_util::Full;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{account::session, random_token};
use steadfast::audit::AuditContext;

use crate::{
    audit::{self, AuthEvent},
    config::GoogleConfig,
    db::users::{self, NewUser, User},
    error::{ApiError, ApiResult},
    http_client,
    state::AppState,
};

const COOKIE: &str = "koldly_oauth";
const COOKIE_PATH: &str = "/auth/google";
const FLOW_TTL_SECS: u64 = 600;
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

fn google(state: &AppState) -> ApiResult<&GoogleConfig> {
    state.config.google.as_ref().ok_or_else(|| {
        ApiError::status(
            StatusCode::NOT_FOUND,
            "Sign in with Google is not enabled on this server.",
        )
    })
}

fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn cookie(state: &AppState, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.config.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path={COOKIE_PATH}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    ))
    .expect("cookie value is URL-safe base64")
}

/// `GET /auth/google`: redirect to the provider.
pub async fn start(State(state): State<AppState>) -> ApiResult<Response> {
    let google = google(&state)?;
    let flow_state = random_token();
    let verifier = random_token();
    let mut url = url::Url::parse(&google.auth_url)
        .map_err(|e| ApiError::internal("GOOGLE_AUTH_URL is not a URL", e))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &google.client_id)
        .append_pair("redirect_uri", &google.redirect_url)
        .append_pair("scope", "openid email profile")
        .append_pair("state", &flow_state)
        .append_pair("code_challenge", &pkce_challenge(&verifier))
        .append_pair("code_challenge_method", "S256")
        .append_pair("prompt", "select_account");
    let mut res = Redirect::to(url.as_str()).into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        cookie(&state, &format!("{flow_state}.{verifier}"), FLOW_TTL_SECS),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// The provider's redirect back.
#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: String,
}

#[derive(Debug, Deserialize)]
struct UserInfo {
    sub: String,
    email: String,
    #[serde(default, deserialize_with = "bool_or_string")]
    email_verified: bool,
    #[serde(default)]
    name: Option<String>,
}

fn bool_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Str(String),
    }
    Ok(match B::deserialize(d)? {
        B::Bool(b) => b,
        B::Str(s) => s == "true",
    })
}

fn flow_cookie(headers: &HeaderMap) -> Option<(String, String)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .find_map(|v| {
            let (s, v) = v.split_once('.')?;
            Some((s.to_owned(), v.to_owned()))
        })
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn bad_flow(detail: &'static str) -> ApiError {
    ApiError::status(StatusCode::BAD_REQUEST, detail)
}

/// `GET /auth/google/callback`: finish the flow and redirect to the front-end
/// with the session token in the URL fragment.
pub async fn callback(
    State(state): State<AppState>,
    audit: Option<AuditContext>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> ApiResult<Response> {
    let google = google(&state)?.clone();
    let result = finish(&state, &google, &headers, query).await;
    let user = match result {
        Ok(user) => user,
        Err((err, reason)) => {
            audit::note(&audit, AuthEvent::OAuthFailure, None, None, Some(&reason));
            return Err(err);
        }
    };
    audit::note(
        &audit,
        AuthEvent::OAuthLogin,
        Some(&user.id),
        Some(&user.email),
        Some("google"),
    );
    let token = session(&state, user).token;
    let mut res = Redirect::to(&format!(
        "{}/auth/callback#token={token}",
        state.config.public_url
    ))
    .into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, cookie(&state, "", 0));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(res)
}

async fn finish(
    state: &AppState,
    google: &GoogleConfig,
    headers: &HeaderMap,
    query: CallbackQuery,
) -> Result<User, (ApiError, String)> {
    if let Some(error) = query.error {
        let error: String = error.chars().take(100).collect();
        return Err((
            bad_flow("The sign-in was cancelled or refused at the provider."),
            format!("provider error: {error}"),
        ));
    }
    let (Some(code), Some(got_state)) = (query.code, query.state) else {
        return Err((
            bad_flow("The callback is missing its code or state."),
            "missing code or state".into(),
        ));
    };
    let Some((want_state, verifier)) = flow_cookie(headers) else {
        return Err((
            bad_flow("The sign-in flow expired or was started in another browser. Start again."),
            "no flow cookie".into(),
        ));
    };
    if !same(&got_state, &want_state) {
        return Err((
            bad_flow("The sign-in state does not match. Start again."),
            "state mismatch".into(),
        ));
    }
    let upstream = |what: &str, e: String| {
        tracing::error!(error = %e, "{what}");
        (
            ApiError::status(
                StatusCode::BAD_GATEWAY,
                "The sign-in provider could not be reached or refused the request.",
            ),
            format!("{what}: {e}"),
        )
    };
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", &code)
        .append_pair("redirect_uri", &google.redirect_url)
        .append_pair("client_id", &google.client_id)
        .append_pair("client_secret", &google.client_secret)
        .append_pair("code_verifier", &verifier)
        .finish();
    let req = Request::post(&google.token_url)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(form)))
        .map_err(|e| upstream("bad token request", e.to_string()))?;
    let (status, body) = http_client::fetch(state.http.clone(), req, PROVIDER_TIMEOUT)
        .await
        .map_err(|e| upstream("token exchange failed", e.to_string()))?;
    if !status.is_success() {
        return Err(upstream(
            "token exchange refused",
            format!("status {status}"),
        ));
    }
    let tokens: TokenResponse = serde_json::from_slice(&body)
        .map_err(|e| upstream("token response unreadable", e.to_string()))?;
    let req = Request::get(&google.userinfo_url)
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", tokens.access_token),
        )
        .header(header::ACCEPT, "application/json")
        .body(Full::default())
        .map_err(|e| upstream("bad userinfo request", e.to_string()))?;
    let (status, body) = http_client::fetch(state.http.clone(), req, PROVIDER_TIMEOUT)
        .await
        .map_err(|e| upstream("userinfo failed", e.to_string()))?;
    if !status.is_success() {
        return Err(upstream("userinfo refused", format!("status {status}")));
    }
    let info: UserInfo = serde_json::from_slice(&body)
        .map_err(|e| upstream("userinfo unreadable", e.to_string()))?;
    account_for(state, info).await
}

async fn account_for(state: &AppState, info: UserInfo) -> Result<User, (ApiError, String)> {
    let db_err = |e: sqlx::Error| (ApiError::from(e), "database error".to_owned());
    let pool = &state.db.pool;
    if let Some(user) = users::find_by_google_id(pool, &info.sub)
        .await
        .map_err(db_err)?
    {
        return Ok(user);
    }
    if !info.email_verified {
        return Err((
            ApiError::status(
                StatusCode::FORBIDDEN,
                "Google has not verified this email address, so it cannot be used to sign in.",
            ),
            "unverified provider email".into(),
        ));
    }
    let email =
        super::normalize_email(&info.email).map_err(|e| (e, "invalid provider email".into()))?;
    let now = state.now();
    if let Some(user) = users::find_by_email(pool, &email).await.map_err(db_err)? {
        if user.google_id.is_some() {
            return Err((
                ApiError::status(
                    StatusCode::CONFLICT,
                    "This account is linked to another Google account.",
                ),
                "account linked to another google id".into(),
            ));
        }
        return users::link_google(pool, &user.id, &info.sub, now)
            .await
            .map_err(db_err);
    }
    let name = info
        .name
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| email.split('@').next().unwrap_or("").to_owned());
    let name: String = name.trim().chars().take(100).collect();
    let new = NewUser {
        email: &email,
        name: &name,
        password_hash: None,
        google_id: Some(&info.sub),
        email_verified: true,
    };
    users::insert(pool, new, now).await.map_err(db_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_example() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn reads_the_flow_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; koldly_oauth=st.ver; c=d"),
        );
        assert_eq!(flow_cookie(&h), Some(("st".into(), "ver".into())));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
