//! Sign in with Google (OAuth 2.0 authorization code flow with PKCE S256).
//!
//! The protocol half is the `oauth2` crate's: the authorization URL with a
//! random `state` and a PKCE challenge, then the code exchange with the
//! verifier (client credentials in the form body, as Google accepts them),
//! over koldly's own HTTP client. The state and the verifier travel in a
//! short-lived HttpOnly cookie scoped to `/auth/google`, sealed by axum-extra's
//! private cookie jar (AES-256-GCM under a key derived from the JWT secret): a
//! browser can neither read the verifier nor change either half.
//!
//! What stays koldly's own: `GET /auth/google/callback` checks the state against
//! the cookie, reads the userinfo, then links the Google account to an existing
//! account with the same address (only when Google says the address is
//! verified) or creates a verified account, and records it in the audit trail.
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
use axum_extra::extract::cookie::{Cookie, PrivateCookieJar, SameSite};
use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::Full;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
    basic::BasicClient,
};
use serde::Deserialize;

use super::account::session;
use steadfast::audit::AuditContext;

use crate::{
    audit::{self, AuthEvent},
    config::GoogleConfig,
    db::users::{self, NewUser, User},
    error::{ApiError, ApiResult},
    http_client::{self, HttpClient},
    state::AppState,
};

const COOKIE: &str = "koldly_oauth";
const COOKIE_PATH: &str = "/auth/google";
const FLOW_TTL: time::Duration = time::Duration::minutes(10);
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// The `oauth2` client with the two endpoints koldly uses set.
type GoogleClient =
    BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

fn google(state: &AppState) -> ApiResult<&GoogleConfig> {
    state.config.google.as_ref().ok_or_else(|| {
        ApiError::status(
            StatusCode::NOT_FOUND,
            "Sign in with Google is not enabled on this server.",
        )
    })
}

fn client(google: &GoogleConfig) -> ApiResult<GoogleClient> {
    let url = |what: &str, e: oauth2::url::ParseError| ApiError::internal(what, e);
    Ok(BasicClient::new(ClientId::new(google.client_id.clone()))
        .set_client_secret(ClientSecret::new(google.client_secret.clone()))
        .set_auth_type(AuthType::RequestBody)
        .set_auth_uri(
            AuthUrl::new(google.auth_url.clone())
                .map_err(|e| url("GOOGLE_AUTH_URL is not a URL", e))?,
        )
        .set_token_uri(
            TokenUrl::new(google.token_url.clone())
                .map_err(|e| url("GOOGLE_TOKEN_URL is not a URL", e))?,
        )
        .set_redirect_uri(
            RedirectUrl::new(google.redirect_url.clone())
                .map_err(|e| url("OAUTH_REDIRECT_URL is not a URL", e))?,
        ))
}

/// The flow cookie: `{state}.{verifier}`, sealed by the private jar.
fn flow_cookie(state: &AppState, value: String) -> Cookie<'static> {
    Cookie::build((COOKIE, value))
        .path(COOKIE_PATH)
        .max_age(FLOW_TTL)
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.config.public_url.starts_with("https://"))
        .build()
}

/// `GET /auth/google`: redirect to the provider.
#[utoipa::path(
    get,
    path = "/google",
    tag = "accounts",
    responses(
        (status = 303, description = "To Google's consent page, with the flow cookie set.",
            headers(("location" = String, description = "Google's authorization URL"))),
        crate::openapi::Problems<GoogleProblems>,
    )
)]
pub async fn start(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
) -> ApiResult<(PrivateCookieJar, Response)> {
    let google = google(&state)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, flow_state) = client(google)?
        .authorize_url(CsrfToken::new_random)
        .add_scopes(["openid", "email", "profile"].map(|s| Scope::new(s.to_owned())))
        .set_pkce_challenge(challenge)
        .add_extra_param("prompt", "select_account")
        .url();
    let jar = jar.add(flow_cookie(
        &state,
        format!("{}.{}", flow_state.secret(), verifier.secret()),
    ));
    let mut res = Redirect::to(url.as_str()).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((jar, res))
}

/// The provider's redirect back.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    /// The authorization code.
    code: Option<String>,
    /// The flow's state, checked against the flow cookie.
    state: Option<String>,
    /// The provider's error, when the user declined.
    error: Option<String>,
}

steadfast::problem_responses! {
    /// Sign in with Google.
    pub struct GoogleProblems {
        404 => "Sign in with Google is not enabled on this server.";
    }
}

steadfast::problem_responses! {
    /// The end of the Google flow.
    pub struct GoogleCallbackProblems {
        400 => "The flow is invalid: no or a stale cookie, a state mismatch, or the provider's error.";
        403 => "Google did not verify the address.";
        409 => "The address belongs to an account linked to another Google account.";
        502 => "Google could not be reached or refused the code.";
    }
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
#[utoipa::path(
    get,
    path = "/google/callback",
    tag = "accounts",
    params(CallbackQuery),
    responses(
        (status = 303, description = "To the front-end, the session token in the URL fragment.",
            headers(("location" = String, description = "`{PUBLIC_URL}/auth/callback#token=...`"))),
        crate::openapi::Problems<(GoogleProblems, GoogleCallbackProblems)>,
    )
)]
pub async fn callback(
    State(state): State<AppState>,
    audit: Option<AuditContext>,
    jar: PrivateCookieJar,
    Query(query): Query<CallbackQuery>,
) -> ApiResult<(PrivateCookieJar, Response)> {
    let google = google(&state)?.clone();
    let flow = jar.get(COOKIE).and_then(|c| {
        let (flow_state, verifier) = c.value().split_once('.')?;
        Some((flow_state.to_owned(), verifier.to_owned()))
    });
    let result = finish(&state, &google, flow, query).await;
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
    let jar = jar.remove(Cookie::build(COOKIE).path(COOKIE_PATH));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok((jar, res))
}

async fn finish(
    state: &AppState,
    google: &GoogleConfig,
    flow: Option<(String, String)>,
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
    let Some((want_state, verifier)) = flow else {
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
    let client = client(google).map_err(|e| (e, "oauth client configuration".to_owned()))?;
    let http = state.http.clone();
    let send = move |req| provider_call(http.clone(), req);
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier))
        .request_async(&send)
        .await
        .map_err(|e| upstream("token exchange failed", token_error(&e)))?;
    let req = Request::get(&google.userinfo_url)
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", tokens.access_token().secret()),
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

/// Why a provider call failed.
#[derive(Debug)]
struct ProviderError(String);

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProviderError {}

/// koldly's HTTP client as the `oauth2` crate calls it: bodies bounded, the
/// provider's answer read within [`PROVIDER_TIMEOUT`].
async fn provider_call(
    client: HttpClient,
    req: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, ProviderError> {
    let (parts, body) = req.into_parts();
    let req = Request::from_parts(parts, Full::new(Bytes::from(body)));
    let res = http_client::fetch_response(client, req, PROVIDER_TIMEOUT)
        .await
        .map_err(|e| ProviderError(e.to_string()))?;
    Ok(res.map(|body| body.to_vec()))
}

/// A token-exchange failure, without the provider's response body.
fn token_error<RE: std::error::Error + 'static, T: oauth2::ErrorResponse>(
    err: &oauth2::RequestTokenError<RE, T>,
) -> String {
    match err {
        oauth2::RequestTokenError::ServerResponse(refusal) => format!("refused: {refusal}"),
        oauth2::RequestTokenError::Request(e) => format!("request: {e}"),
        oauth2::RequestTokenError::Parse(e, _) => format!("unreadable answer: {e}"),
        oauth2::RequestTokenError::Other(e) => e.clone(),
    }
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
    fn states_compare_in_full() {
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
