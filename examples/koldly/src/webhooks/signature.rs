//! Mailgun's webhook signature: `signature` is the hex HMAC-SHA256 of
//! `timestamp` followed by `token`, keyed with the webhook signing key.
//!
//! [`verify`] checks one delivery against koldly's clock: the digest is
//! compared in constant time (`hmac`'s `verify_slice`), the timestamp must lie
//! within [`TOLERANCE_SECS`] of now (either side), and only then does the
//! caller record the token ([`crate::db::webhook_tokens::claim`]) in the
//! transaction that does the delivery's work, so a token is accepted once.
//!
//! The key is held in a [`SigningKey`], whose `Debug` prints no byte of it;
//! no error here names it or the expected digest.
//!
//! Cost: one HMAC-SHA256 over about 60 bytes; no allocation beyond the hex
//! decoding of the signature.
//!
//! ```
//! use koldly::webhooks::signature::{SigningKey, sign, verify};
//! let key = SigningKey::new("key-123");
//! let signature = sign(&key, "1700000000", "abc");
//! assert!(verify(&key, "1700000000", "abc", &signature, 1_700_000_100).is_ok());
//! assert!(verify(&key, "1700000000", "abc", &signature, 1_700_000_301).is_err());
//! ```

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a delivery's timestamp may lie from koldly's clock, in seconds.
pub const TOLERANCE_SECS: i64 = 300;

/// The longest token accepted (Mailgun's are 50 characters).
pub const MAX_TOKEN_CHARS: usize = 200;

/// The webhook signing key (`MAIL_WEBHOOK_SIGNING_KEY`).
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// The key as configured.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into().into_bytes())
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length")
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(REDACTED)")
    }
}

/// Why a delivery's signature was refused. Its text names neither the key nor
/// the expected signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// The timestamp, token or signature is missing or malformed.
    Malformed,
    /// The timestamp is more than [`TOLERANCE_SECS`] away from now.
    Stale,
    /// The signature does not match (a wrong key or altered fields).
    Mismatch,
    /// The token was accepted before.
    Replayed,
}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Malformed => "the webhook signature fields are missing or malformed",
            Self::Stale => "the webhook timestamp is outside the 5-minute tolerance",
            Self::Mismatch => "the webhook signature does not match",
            Self::Replayed => "this webhook token was already accepted",
        })
    }
}

impl std::error::Error for SignatureError {}

/// Checks `signature` (hex) over `timestamp` + `token` with `key`, and the
/// timestamp against `now` (unix seconds).
pub fn verify(
    key: &SigningKey,
    timestamp: &str,
    token: &str,
    signature: &str,
    now: i64,
) -> Result<(), SignatureError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::Malformed)?;
    if token.is_empty() || token.chars().count() > MAX_TOKEN_CHARS {
        return Err(SignatureError::Malformed);
    }
    let given = hex::decode(signature.trim()).map_err(|_| SignatureError::Malformed)?;
    let mut mac = key.mac();
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    mac.verify_slice(&given)
        .map_err(|_| SignatureError::Mismatch)?;
    // Checked after the digest, so a forger learns nothing about the clock.
    // `abs_diff`: a signed timestamp near `i64::MIN` or `MAX` must not
    // overflow (found by fuzzing).
    if now.abs_diff(ts) > TOLERANCE_SECS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// The signature Mailgun would send for `timestamp` and `token` (for tests and
/// for tooling that replays a delivery by hand).
pub fn sign(key: &SigningKey, timestamp: &str, token: &str) -> String {
    let mut mac = key.mac();
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn matches_mailgun_and_refuses_everything_else() {
        let key = SigningKey::new("webhook-key");
        let ts = NOW.to_string();
        let good = sign(&key, &ts, "tok");
        assert_eq!(good.len(), 64);
        assert_eq!(verify(&key, &ts, "tok", &good, NOW), Ok(()));
        assert_eq!(
            verify(&key, &ts, "tok", &good.to_uppercase(), NOW),
            Ok(()),
            "hex is case-insensitive"
        );
        let other = SigningKey::new("another-key");
        assert_eq!(
            verify(&other, &ts, "tok", &good, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&key, &ts, "tok2", &good, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&key, &ts, "tok", &good[..62], NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&key, &ts, "tok", "zz", NOW),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&key, "soon", "tok", &good, NOW),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&key, &ts, "", &sign(&key, &ts, ""), NOW),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&key, &ts, "tok", &good, NOW + TOLERANCE_SECS),
            Ok(())
        );
        assert_eq!(
            verify(&key, &ts, "tok", &good, NOW + TOLERANCE_SECS + 1),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(&key, &ts, "tok", &good, NOW - TOLERANCE_SECS - 1),
            Err(SignatureError::Stale),
            "a timestamp from the future is as suspect as an old one"
        );
    }

    #[test]
    fn extreme_timestamps_are_stale_not_a_panic() {
        let key = SigningKey::new("webhook-key");
        for ts in [i64::MIN, i64::MIN + 1, i64::MAX] {
            let ts = ts.to_string();
            let signature = sign(&key, &ts, "tok");
            assert_eq!(
                verify(&key, &ts, "tok", &signature, NOW),
                Err(SignatureError::Stale),
                "{ts}"
            );
        }
    }

    #[test]
    fn the_key_never_shows() {
        let key = SigningKey::new("super-secret-signing-key");
        assert!(!format!("{key:?}").contains("super-secret"));
        for err in [
            SignatureError::Malformed,
            SignatureError::Stale,
            SignatureError::Mismatch,
            SignatureError::Replayed,
        ] {
            assert!(!err.to_string().contains("super-secret"));
        }
    }
}
