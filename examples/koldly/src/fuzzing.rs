//! The fuzz targets' bodies: one function per koldly parser that reads
//! untrusted input, each checking what must hold for any input, not only that
//! it does not panic. `fuzz/` (cargo fuzz, nightly) calls them with
//! `--cfg fuzzing`; the unit test below replays every committed corpus file
//! through them on stable, so every finding stays a regression test. Not part
//! of the API.

use http::StatusCode;

use crate::{
    billing::signature as stripe,
    prospects::import::{FIELD_MAX, MAX_ROWS, URL_MAX, from_csv},
    validation::is_plausible_email,
    webhooks::signature as mailgun,
};

/// A CSV import (`POST /api/campaigns/{id}/prospects`, `text/csv`): either
/// 1 to [`MAX_ROWS`] rows numbered 1, 2, 3... in order, each valid row with a
/// plausible address and every field within its limit, each refused row with
/// a reason; or a 400 / 422 problem naming what is wrong, a malformed file the
/// line where it breaks.
pub fn csv_import(data: &[u8]) {
    match from_csv(data) {
        Ok(rows) => {
            let total = rows.valid.len() + rows.invalid.len();
            assert!((1..=MAX_ROWS).contains(&total), "{total} rows");
            let mut numbers: Vec<usize> = rows.valid.iter().map(|(n, _)| *n).collect();
            numbers.extend(rows.invalid.iter().map(|r| r.row));
            numbers.sort_unstable();
            assert!(numbers.iter().copied().eq(1..=total), "{numbers:?}");
            for (_, p) in &rows.valid {
                assert!(is_plausible_email(&p.email), "{:?}", p.email);
                assert_eq!(p.email.trim(), p.email);
                for (value, max) in [
                    (&p.first_name, FIELD_MAX),
                    (&p.last_name, FIELD_MAX),
                    (&p.company, FIELD_MAX),
                    (&p.title, FIELD_MAX),
                    (&p.industry, FIELD_MAX),
                    (&p.website, URL_MAX),
                    (&p.linkedin_url, URL_MAX),
                ] {
                    if let Some(value) = value {
                        assert!(!value.is_empty() && value.chars().count() <= max);
                        assert!(!value.contains('\0'), "{value:?}");
                    }
                }
            }
            for refused in &rows.invalid {
                assert!(!refused.reason.is_empty());
            }
        }
        Err(err) => {
            let problem = &err.0;
            let detail = problem.detail().unwrap_or_default().to_owned();
            match problem.status() {
                StatusCode::BAD_REQUEST if detail.starts_with("`body` the CSV") => {
                    // The line it names exists: csv counts `\n` and `\r`.
                    let line: usize = detail
                        .split(" at line ")
                        .nth(1)
                        .and_then(|rest| rest.split(' ').next())
                        .and_then(|n| n.parse().ok())
                        .unwrap_or_else(|| panic!("no line in {detail:?}"));
                    let breaks = data.iter().filter(|b| matches!(b, b'\n' | b'\r')).count();
                    assert!((1..=breaks + 1).contains(&line), "{detail:?}");
                }
                StatusCode::BAD_REQUEST => assert!(detail.contains("`email` column"), "{detail:?}"),
                StatusCode::UNPROCESSABLE_ENTITY => assert!(
                    detail.contains("at least one")
                        || detail.contains(&format!("at most {MAX_ROWS}")),
                    "{detail:?}"
                ),
                other => panic!("{other} {detail:?}"),
            }
        }
    }
}

/// Reads the fuzzer's bytes as the fields a structured target needs.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }

    fn i64(&mut self) -> i64 {
        let mut bytes = [0u8; 8];
        for b in &mut bytes {
            *b = self.byte();
        }
        i64::from_le_bytes(bytes)
    }

    /// A length-prefixed slice (a length byte, then at most that many bytes).
    fn slice(&mut self) -> &'a [u8] {
        let len = usize::from(self.byte()).min(self.0.len());
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        taken
    }

    fn rest(self) -> &'a [u8] {
        self.0
    }
}

/// `bytes` with byte `at` (modulo its length) XORed with `flip` (never 0).
fn mutate(bytes: &[u8], at: u8, flip: u8) -> Option<Vec<u8>> {
    if bytes.is_empty() {
        return None;
    }
    let mut out = bytes.to_vec();
    out[usize::from(at) % bytes.len()] ^= flip.max(1);
    Some(out)
}

/// Stripe's `Stripe-Signature` header: the input split on its first NUL byte
/// is parsed as a header over the body that follows, and whatever it says, an
/// accepted header carries a `v1` that is the HMAC of its `t` and the body
/// under a configured secret, within the tolerance. Then, from the input as
/// (timestamp, secret, body, mutations): the header Stripe would send
/// verifies; any changed byte of the body, of the signature (other than a hex
/// digit's case), or of the timestamp does not.
pub fn stripe_signature(data: &[u8]) {
    const TOLERANCE: i64 = 300;
    let secrets = ["whsec_fuzz".to_owned()];
    let (header, body) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b""[..]),
    };
    let header = String::from_utf8_lossy(header);
    let now = 1_700_000_000;
    if stripe::verify(Some(&header), body, &secrets, now, TOLERANCE).is_ok() {
        let genuine = header.split(',').any(|item| {
            let Some((t, v1)) = item.trim().split_once('=') else {
                return false;
            };
            t == "v1"
                && header.split(',').any(|item| {
                    item.trim().strip_prefix("t=").is_some_and(|t| {
                        t.parse::<i64>().is_ok_and(|t| {
                            now.abs_diff(t) <= TOLERANCE as u64
                                && stripe::sign(&secrets[0], t, body).eq_ignore_ascii_case(v1)
                        })
                    })
                })
        });
        assert!(genuine, "{header:?} accepted");
    }

    let mut fields = Fields(data);
    let t = fields.i64();
    let (at, flip) = (fields.byte(), fields.byte());
    let secret = String::from_utf8_lossy(fields.slice()).into_owned();
    let body = fields.rest();
    let secrets = [secret];
    let signature = stripe::sign(&secrets[0], t, body);
    let header = format!("t={t},v1={signature}");
    assert_eq!(
        stripe::verify(Some(&header), body, &secrets, t, TOLERANCE),
        Ok(())
    );
    if let Some(changed) = mutate(body, at, flip) {
        assert_eq!(
            stripe::verify(Some(&header), &changed, &secrets, t, TOLERANCE),
            Err(stripe::SignatureError::Mismatch)
        );
    }
    let changed = mutate(signature.as_bytes(), at, flip).unwrap();
    if !changed.eq_ignore_ascii_case(signature.as_bytes()) {
        let header = format!("t={t},v1={}", String::from_utf8_lossy(&changed));
        assert!(stripe::verify(Some(&header), body, &secrets, t, TOLERANCE).is_err());
    }
    let other = t ^ i64::from(flip.max(1));
    let header = format!("t={other},v1={signature}");
    assert!(stripe::verify(Some(&header), body, &secrets, t, TOLERANCE).is_err());
}

/// Mailgun's webhook signature fields (`timestamp`, `token`, `signature`):
/// the input split on NUL bytes into the three is checked at a fixed now, and
/// an accepted delivery is signed over exactly its timestamp and token, within
/// the tolerance. Then, from the input as (timestamp, key, token, mutations):
/// the fields Mailgun would send verify at any now within the tolerance and
/// are stale outside it (any timestamp: no overflow); any changed byte of the
/// token, timestamp or signature (other than a hex digit's case) fails.
pub fn mailgun_signature(data: &[u8]) {
    let key = mailgun::SigningKey::new("key-fuzz");
    let now = 1_700_000_000;
    let mut parts = data.splitn(3, |&b| b == 0).map(String::from_utf8_lossy);
    let (timestamp, token, signature) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if mailgun::verify(&key, &timestamp, &token, &signature, now).is_ok() {
        let expected = mailgun::sign(&key, &timestamp, &token);
        assert!(
            expected.eq_ignore_ascii_case(signature.trim()),
            "{signature:?}"
        );
        let ts: i64 = timestamp.trim().parse().unwrap();
        assert!(now.abs_diff(ts) <= mailgun::TOLERANCE_SECS as u64);
        assert!(!token.is_empty() && token.chars().count() <= mailgun::MAX_TOKEN_CHARS);
    }

    let mut fields = Fields(data);
    let ts = fields.i64();
    let skew = i64::from(fields.byte() as i8);
    let (at, flip) = (fields.byte(), fields.byte());
    let key = mailgun::SigningKey::new(String::from_utf8_lossy(fields.slice()));
    let token = String::from_utf8_lossy(fields.rest()).into_owned();
    if token.is_empty() || token.chars().count() > mailgun::MAX_TOKEN_CHARS {
        return;
    }
    let timestamp = ts.to_string();
    let signature = mailgun::sign(&key, &timestamp, &token);
    // A skew of up to 127 s either way is within the tolerance.
    let within = ts.saturating_add(skew);
    assert_eq!(
        mailgun::verify(&key, &timestamp, &token, &signature, within),
        Ok(())
    );
    let far = ts.wrapping_add(i64::MAX / 2);
    assert_eq!(
        mailgun::verify(&key, &timestamp, &token, &signature, far),
        Err(mailgun::SignatureError::Stale)
    );
    let refused = |timestamp: &[u8], token: &[u8], signature: &[u8]| {
        let (Ok(timestamp), Ok(token), Ok(signature)) = (
            std::str::from_utf8(timestamp),
            std::str::from_utf8(token),
            std::str::from_utf8(signature),
        ) else {
            return;
        };
        assert!(mailgun::verify(&key, timestamp, token, signature, ts).is_err());
    };
    let changed = mutate(token.as_bytes(), at, flip).unwrap();
    refused(timestamp.as_bytes(), &changed, signature.as_bytes());
    let changed = mutate(timestamp.as_bytes(), at, flip).unwrap();
    refused(&changed, token.as_bytes(), signature.as_bytes());
    let changed = mutate(signature.as_bytes(), at, flip).unwrap();
    if !changed.eq_ignore_ascii_case(signature.as_bytes()) {
        refused(timestamp.as_bytes(), token.as_bytes(), &changed);
    }
}

#[cfg(test)]
mod replay {
    use std::path::Path;

    /// Every file of `fuzz/corpus/<target>/` through `target`: the inputs the
    /// fuzzer kept, crashes it found included, stay tested on stable.
    fn replay(target: &str, run: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{} is empty", dir.display());
        for file in files {
            let input = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&input));
            assert!(outcome.is_ok(), "{} failed", file.display());
        }
    }

    #[test]
    fn csv_import_corpus() {
        replay("csv_import", super::csv_import);
    }

    #[test]
    fn stripe_signature_corpus() {
        replay("stripe_signature", super::stripe_signature);
    }

    #[test]
    fn mailgun_signature_corpus() {
        replay("mailgun_signature", super::mailgun_signature);
    }
}
