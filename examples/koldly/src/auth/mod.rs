//! Accounts: signup, login, sessions (JWT), password reset, email verification
//! and Sign in with Google.

pub mod account;
pub mod extract;
pub mod jwt;
pub mod oauth;
pub mod password;
pub mod rate_limit;
pub mod reset;
pub mod verify;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{error::ApiError, state::AppState};

/// The account routes under `/api/auth` whose effects must not happen twice
/// (an account, a mail): they sit behind the idempotency layer.
pub fn idempotent_api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(account::signup))
        .routes(routes!(reset::forgot_password))
        .routes(routes!(verify::send_verification))
}

/// The other account routes under `/api/auth`.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(account::login))
        .routes(routes!(account::me))
        .routes(routes!(account::logout_all))
        .routes(routes!(account::config))
        .routes(routes!(reset::verify_token))
        .routes(routes!(reset::reset_password))
        .routes(routes!(verify::verify_email))
}

/// Paths under which a segment is a secret (a client still putting a reset
/// token in the path, as koldly once asked): [`redact_path`] hides the rest.
pub const SECRET_PATH_PREFIXES: &[&str] = &["/api/auth/reset-password/verify/"];

/// `path` with whatever follows a [`SECRET_PATH_PREFIXES`] entry replaced by
/// `REDACTED`; `None` when nothing needs hiding.
pub fn redact_path(path: &str) -> Option<String> {
    SECRET_PATH_PREFIXES.iter().find_map(|prefix| {
        let rest = path.strip_prefix(prefix)?;
        (!rest.is_empty()).then(|| format!("{prefix}REDACTED"))
    })
}

/// The browser routes of Sign in with Google under `/auth`.
pub fn oauth_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(oauth::start))
        .routes(routes!(oauth::callback))
}

steadfast::problem_responses! {
    /// The account routes' JSON bodies, read by axum's `Json` extractor.
    pub struct JsonRejected {
        400 => "The body is not valid JSON.";
        415 => "The body is not `application/json`.";
        422 => "The JSON lacks a field or has one of the wrong type, or a value breaks a rule (the detail says which).";
    }
}

steadfast::problem_responses! {
    /// Routes limited per client address.
    pub struct RateLimited {
        429 => "Too many attempts from this address; retry after `Retry-After`.",
            types = [crate::error::types::RATE_LIMITED];
    }
}

steadfast::problem_responses! {
    /// Routes taking a single-use token.
    pub struct InvalidToken {
        400 => "The token is unknown, used or expired (or the body is not valid JSON).";
    }
}

/// A URL-safe token of 32 random bytes from the OS-seeded CSPRNG.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The SHA-256 of a token, hex: what the database stores.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        use std::fmt::Write;
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A valid email address, trimmed and lowercased: RFC 5322 syntax as the
/// `email_address` crate checks it, with a top-level domain (mail must be
/// deliverable on the internet), without display text or a domain literal,
/// and at most 254 bytes.
pub fn normalize_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim().to_lowercase();
    let options = email_address::Options::default()
        .with_required_tld()
        .without_domain_literal()
        .without_display_text();
    let valid = email.len() <= 254
        && !email.chars().any(char::is_control)
        && email_address::EmailAddress::parse_with_options(&email, options).is_ok();
    if valid {
        Ok(email)
    } else {
        Err(ApiError::validation("email must be a valid email address"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token());
        assert_eq!(token_hash(&a).len(), 64);
        assert_eq!(token_hash(&a), token_hash(&a));
    }

    #[test]
    fn secret_path_segments_are_redacted() {
        assert_eq!(
            redact_path("/api/auth/reset-password/verify/abc").as_deref(),
            Some("/api/auth/reset-password/verify/REDACTED")
        );
        assert_eq!(redact_path("/api/auth/reset-password/verify/"), None);
        assert_eq!(redact_path("/api/auth/me"), None);
    }

    #[test]
    fn emails() {
        assert_eq!(
            normalize_email(" Ann@Example.COM ").unwrap(),
            "ann@example.com"
        );
        assert!(normalize_email("o'brien+tag@mail.example.co.uk").is_ok());
        for bad in [
            "",
            "ann",
            "@x.com",
            "ann@",
            "ann@com",
            "a b@x.com",
            "ann@x.com@y.com",
            "ann@[10.0.0.1]",
            "Ann <ann@x.com>",
            "ann..b@x.com",
            "ann@-x.com",
            &format!("{}@x.com", "a".repeat(65)),
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }
}
