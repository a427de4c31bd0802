//! The byte form of entries in a remote store.
//!
//! In flight: `L`, the fingerprint (32 bytes), the lease token (16 bytes).
//! Completed: `C`, the fingerprint, then either `R`, the status (u16), the
//! header count (u16), each header as name length (u16), name, value length
//! (u32), value, and the body to the end; or `N` and the status (not stored).
//! Integers are big-endian.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::{Completion, Entry, StoreError, StoreErrorKind, StoredResponse};
use crate::idempotency::Fingerprint;

pub(crate) const TOKEN_LEN: usize = 16;

/// The value of a claim held with `token`.
pub(crate) fn in_flight(fingerprint: &Fingerprint, token: [u8; TOKEN_LEN]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 32 + TOKEN_LEN);
    out.push(b'L');
    out.extend_from_slice(fingerprint.as_bytes());
    out.extend_from_slice(&token);
    out
}

/// The value of a completed entry. Header counts and lengths fit by construction
/// (`http` caps a map at 32 768 entries, and a header value at far less than 4 GiB).
pub(crate) fn completed(fingerprint: &Fingerprint, completion: &Completion) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(b'C');
    out.extend_from_slice(fingerprint.as_bytes());
    match completion {
        Completion::Response(res) => {
            out.reserve(res.weight());
            out.push(b'R');
            out.extend_from_slice(&res.status.as_u16().to_be_bytes());
            out.extend_from_slice(&(res.headers.len() as u16).to_be_bytes());
            for (name, value) in &res.headers {
                out.extend_from_slice(&(name.as_str().len() as u16).to_be_bytes());
                out.extend_from_slice(name.as_str().as_bytes());
                out.extend_from_slice(&(value.len() as u32).to_be_bytes());
                out.extend_from_slice(value.as_bytes());
            }
            out.extend_from_slice(&res.body);
        }
        Completion::NotStored { status } => {
            out.push(b'N');
            out.extend_from_slice(&status.as_u16().to_be_bytes());
        }
    }
    out
}

fn corrupt() -> StoreError {
    StoreError::new(
        StoreErrorKind::Corrupt,
        "an idempotency entry in the store is malformed",
    )
}

/// A reader over a value that fails with `Corrupt` when it runs short.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(corrupt());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, StoreError> {
        Ok(u16::from_be_bytes(
            self.take(2)?.try_into().map_err(|_| corrupt())?,
        ))
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().map_err(|_| corrupt())?,
        ))
    }

    fn status(&mut self) -> Result<StatusCode, StoreError> {
        StatusCode::from_u16(self.u16()?).map_err(|_| corrupt())
    }
}

/// Decodes a stored value; `lock_expires_in` is its remaining TTL, used for
/// claims in flight.
pub(crate) fn decode(value: &[u8], lock_expires_in: Duration) -> Result<Entry, StoreError> {
    let mut r = Reader(value);
    let tag = r.take(1)?[0];
    let fingerprint = Fingerprint::from_bytes(r.take(32)?.try_into().map_err(|_| corrupt())?);
    match tag {
        b'L' => {
            r.take(TOKEN_LEN)?;
            Ok(Entry::InFlight {
                fingerprint,
                lock_expires_in,
            })
        }
        b'C' => {
            let completion = match r.take(1)?[0] {
                b'R' => {
                    let status = r.status()?;
                    let count = r.u16()?;
                    let mut headers = HeaderMap::with_capacity(usize::from(count));
                    for _ in 0..count {
                        let len = usize::from(r.u16()?);
                        let name = HeaderName::from_bytes(r.take(len)?).map_err(|_| corrupt())?;
                        let len = r.u32()? as usize;
                        let value = HeaderValue::from_bytes(r.take(len)?).map_err(|_| corrupt())?;
                        headers.append(name, value);
                    }
                    Completion::Response(StoredResponse {
                        status,
                        headers,
                        body: Bytes::copy_from_slice(r.0),
                    })
                }
                b'N' => Completion::NotStored {
                    status: r.status()?,
                },
                _ => return Err(corrupt()),
            };
            Ok(Entry::Completed {
                fingerprint,
                completion,
            })
        }
        _ => Err(corrupt()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: Fingerprint = Fingerprint::from_bytes([3; 32]);

    #[test]
    fn round_trips() {
        let mut headers = HeaderMap::new();
        headers.append("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        let completion = Completion::Response(StoredResponse {
            status: StatusCode::CREATED,
            headers,
            body: Bytes::from_static(b"{\"id\":1}\x00\xff"),
        });
        let bytes = completed(&FP, &completion);
        assert_eq!(
            decode(&bytes, Duration::ZERO).unwrap(),
            Entry::Completed {
                fingerprint: FP,
                completion
            }
        );
        let not_stored = Completion::NotStored {
            status: StatusCode::OK,
        };
        assert_eq!(
            decode(&completed(&FP, &not_stored), Duration::ZERO).unwrap(),
            Entry::Completed {
                fingerprint: FP,
                completion: not_stored
            }
        );
        let ttl = Duration::from_millis(1500);
        assert_eq!(
            decode(&in_flight(&FP, [9; TOKEN_LEN]), ttl).unwrap(),
            Entry::InFlight {
                fingerprint: FP,
                lock_expires_in: ttl
            }
        );
    }

    #[test]
    fn malformed_values_are_errors_not_panics() {
        let good = completed(
            &FP,
            &Completion::Response(StoredResponse {
                status: StatusCode::OK,
                headers: [(http::header::ETAG, HeaderValue::from_static("\"x\""))]
                    .into_iter()
                    .collect(),
                body: Bytes::new(),
            }),
        );
        for cut in 0..good.len() {
            assert!(
                decode(&good[..cut], Duration::ZERO).is_err(),
                "cut at {cut}"
            );
        }
        let mut bad_tag = good.clone();
        bad_tag[0] = b'X';
        assert_eq!(
            decode(&bad_tag, Duration::ZERO).unwrap_err().kind(),
            StoreErrorKind::Corrupt
        );
    }
}
