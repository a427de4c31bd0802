//! Stripe's webhook signature: `Stripe-Signature: t=TIMESTAMP,v1=HEX[,v1=HEX...]`
//! where each `v1` is the hex HMAC-SHA256, under a signing secret, of
//! `TIMESTAMP.RAW_BODY`. A request is genuine when its timestamp is within
//! the tolerance of koldly's clock (either way) and some `v1` matches some
//! configured secret (several during a rotation); every comparison takes
//! constant time. Other schemes (`v0`) are ignored, as Stripe's libraries do.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Why a signature was refused (never says which secret or signature).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No header, no `t=`, no `v1=`, or not the documented format.
    Malformed,
    /// The signed timestamp is further than the tolerance from now.
    Stale,
    /// No signature matches any secret.
    Mismatch,
}

impl SignatureError {
    /// For the problem's detail.
    pub fn detail(self) -> &'static str {
        match self {
            Self::Malformed => "The Stripe-Signature header is missing or malformed.",
            Self::Stale => "The Stripe-Signature timestamp is outside the tolerance.",
            Self::Mismatch => "No signature in Stripe-Signature matches.",
        }
    }
}

/// The hex HMAC-SHA256 of `timestamp.body` under `secret`: what Stripe
/// sends as `v1` (tests sign with it too).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mac = mac(secret, timestamp, body);
    let mut out = String::with_capacity(64);
    for b in mac {
        use std::fmt::Write;
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Checks `header` against `body` with `secrets`, at `now` (unix seconds),
/// accepting a timestamp at most `tolerance` seconds away.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[String],
    now: i64,
    tolerance: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Malformed)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let (key, value) = item
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match key {
            "t" if timestamp.is_none() => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                )
            }
            "t" => return Err(SignatureError::Malformed),
            // A v1 that is not 64 hex digits can match nothing; it is skipped.
            "v1" => signatures.extend(decode_hex(value)),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now.abs_diff(timestamp) > tolerance.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    // Every secret against every signature, without stopping early.
    let mut matched = subtle::Choice::from(0);
    for secret in secrets {
        let expected = mac(secret, timestamp, body);
        for signature in &signatures {
            matched |= expected.ct_eq(signature);
        }
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"id":"evt_1"}"#;

    #[test]
    fn a_signature_by_any_secret_within_tolerance() {
        let secrets = vec!["whsec_old".to_owned(), "whsec_new".to_owned()];
        let sig = sign("whsec_new", 1000, BODY);
        let header = format!("t=1000,v1={},v1={sig}", "0".repeat(64));
        assert_eq!(verify(Some(&header), BODY, &secrets, 1300, 300), Ok(()));
        assert_eq!(verify(Some(&header), BODY, &secrets, 700, 300), Ok(()));
        assert_eq!(
            verify(Some(&header), BODY, &secrets, 1301, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(Some(&header), b"{}", &secrets, 1000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header), BODY, &secrets[..1], 1000, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn malformed_headers() {
        let secrets = vec!["s".to_owned()];
        let sig = sign("s", 5, BODY);
        for header in [
            String::new(),
            "t=5".to_owned(),
            format!("v1={sig}"),
            format!("t=x,v1={sig}"),
            format!("t=5,t=5,v1={sig}"),
            "t=5,v1=zz".to_owned(),
            format!("t=5;v1={sig}"),
        ] {
            assert_eq!(
                verify(Some(&header), BODY, &secrets, 5, 300),
                Err(SignatureError::Malformed),
                "{header}"
            );
        }
        assert_eq!(
            verify(None, BODY, &secrets, 5, 300),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(
                Some(&format!("t=5,v0=abc,v1={sig}")),
                BODY,
                &secrets,
                5,
                300
            ),
            Ok(())
        );
    }
}
