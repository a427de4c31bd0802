//! Session tokens: HS256 JWTs (the algorithm pinned), 7-day expiry.
//!
//! The signature, algorithm, issuer and audience are checked by
//! `jsonwebtoken`; the times (`exp`, `nbf`, `iat`) are checked here against
//! koldly's clock, so that tests can move time and so that a token claiming to
//! be issued, or valid, in the future is refused like an expired one.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};

/// The `iss` claim koldly issues and requires.
pub const ISSUER: &str = "koldly";
/// The `aud` claim koldly issues and requires.
pub const AUDIENCE: &str = "koldly-api";
/// How far the clocks of the signer and the checker may disagree, in seconds.
pub const LEEWAY_SECS: i64 = 30;

/// The claims of a session token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Issued at (unix seconds).
    pub iat: i64,
    /// Not valid before (unix seconds); absent in tokens older than this check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Expires at (unix seconds).
    pub exp: i64,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The user's session version when the token was issued: a password reset
    /// or change, or a logout from everywhere, bumps the user's version and so
    /// ends every earlier token.
    #[serde(default)]
    pub sv: i64,
}

/// Signs and checks session tokens.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: i64,
}

impl JwtKeys {
    /// Keys for `secret`, tokens living `ttl`.
    pub fn new(secret: &[u8], ttl: std::time::Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Times are checked in `verify` against koldly's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl_secs: ttl.as_secs() as i64,
        }
    }

    /// A token for `user_id` at session version `session_version`, issued at `now`.
    pub fn issue(&self, user_id: &str, session_version: i64, now: i64) -> String {
        self.sign(&Claims {
            sub: user_id.to_owned(),
            iat: now,
            nbf: Some(now),
            exp: now + self.ttl_secs,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sv: session_version,
        })
    }

    /// Signs any claims (tests forge tokens with it).
    pub fn sign(&self, claims: &Claims) -> String {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail")
    }

    /// The claims of a valid token at `now`; `None` for anything else (bad
    /// signature, another algorithm, `alg: none`, wrong issuer or audience,
    /// expired, not yet valid, issued in the future).
    pub fn verify(&self, token: &str, now: i64) -> Option<Claims> {
        let claims = match decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => data.claims,
            Err(err) => {
                tracing::debug!(error = %err, "rejected bearer token");
                return None;
            }
        };
        let problem = if claims.exp + LEEWAY_SECS <= now {
            Some("expired")
        } else if claims.nbf.is_some_and(|nbf| nbf - LEEWAY_SECS > now) {
            Some("not valid yet (nbf)")
        } else if claims.iat - LEEWAY_SECS > now {
            Some("issued in the future (iat)")
        } else {
            None
        };
        match problem {
            Some(problem) => {
                tracing::debug!(problem, "rejected bearer token");
                None
            }
            None => Some(claims),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const NOW: i64 = 1_800_000_000;

    fn keys() -> JwtKeys {
        JwtKeys::new(
            b"0123456789abcdef0123456789abcdef",
            Duration::from_secs(3600),
        )
    }

    fn claims(iat: i64, nbf: Option<i64>, exp: i64) -> Claims {
        Claims {
            sub: "u1".into(),
            iat,
            nbf,
            exp,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sv: 0,
        }
    }

    #[test]
    fn round_trip_and_rejections() {
        let keys = keys();
        let token = keys.issue("u1", 3, NOW);
        let claims = keys.verify(&token, NOW).unwrap();
        assert_eq!((claims.sub.as_str(), claims.sv), ("u1", 3));
        let other = JwtKeys::new(
            b"another secret another secret 00",
            Duration::from_secs(3600),
        );
        assert!(other.verify(&token, NOW).is_none(), "forged signature");
        assert!(keys.verify(&token, NOW + 3600 + 31).is_none(), "expired");
        assert!(keys.verify(&token, NOW + 3600 + 29).is_some(), "leeway");
        assert!(keys.verify("not.a.jwt", NOW).is_none());
    }

    #[test]
    fn future_nbf_and_iat_are_refused() {
        let keys = keys();
        let nbf = keys.sign(&claims(NOW, Some(NOW + 3600), NOW + 7200));
        assert!(keys.verify(&nbf, NOW).is_none(), "nbf in the future");
        assert!(keys.verify(&nbf, NOW + 3600).is_some(), "valid from nbf on");
        let iat = keys.sign(&claims(NOW + 600, None, NOW + 7200));
        assert!(keys.verify(&iat, NOW).is_none(), "iat in the future");
        let skew = keys.sign(&claims(NOW + 20, Some(NOW + 20), NOW + 7200));
        assert!(keys.verify(&skew, NOW).is_some(), "within the leeway");
    }

    #[test]
    fn wrong_issuer_or_audience_is_refused() {
        let keys = keys();
        let mut c = claims(NOW, Some(NOW), NOW + 60);
        c.iss = "someone-else".into();
        assert!(keys.verify(&keys.sign(&c), NOW).is_none());
        let mut c = claims(NOW, Some(NOW), NOW + 60);
        c.aud = "another-api".into();
        assert!(keys.verify(&keys.sign(&c), NOW).is_none());
    }
}
