//! Session tokens: HS256 JWTs (the algorithm pinned), 7-day expiry, issuer and
//! audience checked.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};

/// The `iss` claim koldly issues and requires.
pub const ISSUER: &str = "koldly";
/// The `aud` claim koldly issues and requires.
pub const AUDIENCE: &str = "koldly-api";

/// The claims of a session token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Issued at (unix seconds).
    pub iat: i64,
    /// Expires at (unix seconds).
    pub exp: i64,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
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
        validation.leeway = 30;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl_secs: ttl.as_secs() as i64,
        }
    }

    /// A token for `user_id`, issued at `now`.
    pub fn issue(&self, user_id: &str, now: i64) -> String {
        let claims = Claims {
            sub: user_id.to_owned(),
            iat: now,
            exp: now + self.ttl_secs,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail")
    }

    /// The claims of a valid token; `None` for anything else (bad signature,
    /// another algorithm, `alg: none`, expired, wrong issuer or audience).
    pub fn verify(&self, token: &str) -> Option<Claims> {
        match decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Some(data.claims),
            Err(err) => {
                tracing::debug!(error = %err, "rejected bearer token");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn now() -> i64 {
        crate::clock::Clock::now(&crate::clock::SystemClock)
    }

    #[test]
    fn round_trip_and_rejections() {
        let keys = JwtKeys::new(
            b"0123456789abcdef0123456789abcdef",
            Duration::from_secs(3600),
        );
        let token = keys.issue("u1", now());
        assert_eq!(keys.verify(&token).unwrap().sub, "u1");
        let other = JwtKeys::new(
            b"another secret another secret 00",
            Duration::from_secs(3600),
        );
        assert!(other.verify(&token).is_none(), "forged signature");
        let expired = keys.issue("u1", now() - 7200);
        assert!(keys.verify(&expired).is_none(), "expired");
        assert!(keys.verify("not.a.jwt").is_none());
    }
}
