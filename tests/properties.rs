//! Property tests with oracles (RELIABILITY.md, "Properties"): the
//! `Idempotency-Key` parser against the `sfv` crate's RFC 8941 parser, and the
//! retry backoff against its documented bounds and the deadline. The canonical
//! JSON and route matcher properties are unit tests (`src/idempotency/fingerprint.rs`,
//! `src/route/properties.rs`): their subjects are not public.

use std::time::Duration;

use proptest::prelude::*;
use rand::{SeedableRng, rngs::SmallRng};
use sfv::{BareItem, FieldType, Item, Parser};

/// Printable ASCII: what an sf-String may hold.
fn sf_chars() -> impl Strategy<Value = String> {
    proptest::collection::vec(0x20u8..=0x7e, 0..300)
        .prop_map(|bytes| bytes.into_iter().map(char::from).collect())
}

/// Header values built to hit the edges: quotes, escapes, commas, spaces,
/// semicolons (sf parameters), tabs and a non-ASCII byte among letters.
fn edgy_value() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop_oneof![
        Just(b"\"".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"\\\"".to_vec()),
        Just(b"\\\\".to_vec()),
        Just(b",".to_vec()),
        Just(b" ".to_vec()),
        Just(b";a=1".to_vec()),
        Just(b"\t".to_vec()),
        Just("\u{e9}".as_bytes().to_vec()),
        "[a-z0-9-]{1,8}".prop_map(String::into_bytes),
    ];
    proptest::collection::vec(pieces, 0..12).prop_map(|parts| parts.concat())
}

#[cfg(feature = "idempotency")]
mod idempotency_key {
    use super::*;
    use steadfast::idempotency::{IdempotencyKey, KeyError, MAX_KEY_LEN};

    proptest! {
        /// Any string sfv writes as an sf-String reads back as that key (or
        /// as empty / too long, at the documented limits).
        #[test]
        fn reads_every_sf_string_sfv_writes(text in sf_chars()) {
            let string = sfv::String::try_from(text.clone()).unwrap();
            let item = Item::new(BareItem::String(string));
            let header = item.serialize();
            let parsed = IdempotencyKey::parse(header.as_bytes());
            match text.len() {
                0 => prop_assert_eq!(parsed, Err(KeyError::Empty)),
                n if n > MAX_KEY_LEN => prop_assert_eq!(parsed, Err(KeyError::TooLong)),
                _ => {
                    let key = parsed.unwrap();
                    prop_assert_eq!(key.as_str(), text.as_str());
                }
            }
        }

        /// On any quoted value, the parser agrees with sfv: sfv reads an
        /// sf-String without parameters exactly when the key parser accepts it
        /// (within the length limit), and both read the same text.
        #[test]
        fn agrees_with_sfv_on_quoted_values(tail in edgy_value()) {
            let mut value = b"\"".to_vec();
            value.extend_from_slice(&tail);
            let ours = IdempotencyKey::parse(&value);
            // HTTP strips a field value's surrounding whitespace (SP, HTAB) before
            // any structured-field parser sees it (RFC 9110 §5.5); so do we.
            let field = value.trim_ascii_end();
            let field = field
                .iter()
                .rposition(|b| !matches!(b, b' ' | b'\t'))
                .map_or(&field[..0], |end| &field[..=end]);
            let theirs = Parser::new(field).parse::<Item>().ok().and_then(|item| {
                match (item.bare_item, item.params.is_empty()) {
                    (BareItem::String(s), true) => Some(s.as_str().to_owned()),
                    _ => None,
                }
            });
            match (&ours, &theirs) {
                (Ok(key), Some(text)) => prop_assert_eq!(key.as_str(), text.as_str()),
                (Err(KeyError::Empty), Some(text)) => prop_assert!(text.is_empty()),
                (Err(KeyError::TooLong), Some(text)) => prop_assert!(text.len() > MAX_KEY_LEN),
                (Err(_), None) => {}
                _ => prop_assert!(false, "value {:?}: ours {:?}, sfv {:?}", String::from_utf8_lossy(&value), ours, theirs),
            }
        }
    }
}

#[cfg(feature = "retry")]
mod backoff {
    use super::*;
    use std::{
        io,
        sync::{Arc, Mutex},
    };
    use steadfast::retry::{Backoff, Jitter, RetryPolicy};
    use tokio::time::Instant;

    fn jitter() -> impl Strategy<Value = Jitter> {
        prop_oneof![
            Just(Jitter::None),
            Just(Jitter::Full),
            Just(Jitter::Equal),
            Just(Jitter::Decorrelated),
        ]
    }

    proptest! {
        /// Every delay lies within its jitter's documented range, and never
        /// above the maximum.
        #[test]
        fn delays_stay_within_their_bounds(
            base_ms in 1u64..2_000,
            multiplier in 1.0f64..4.0,
            max_ms in 1u64..60_000,
            jitter in jitter(),
            seed in any::<u64>(),
        ) {
            let base = Duration::from_millis(base_ms);
            let max = Duration::from_millis(max_ms).max(base);
            let backoff = Backoff::new(base, multiplier, max, jitter);
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut previous = Duration::ZERO;
            for n in 1..=20 {
                let delay = backoff.delay(n, previous, &mut rng);
                let exponential = backoff.exponential(n);
                prop_assert!(exponential <= max);
                prop_assert!(delay <= max, "{:?} > max {:?}", delay, max);
                match jitter {
                    Jitter::None => prop_assert_eq!(delay, exponential),
                    Jitter::Full => prop_assert!(delay <= exponential),
                    Jitter::Equal => prop_assert!(delay >= exponential / 2 - Duration::from_nanos(1) && delay <= exponential),
                    Jitter::Decorrelated => {
                        let prev = if previous.is_zero() { base } else { previous };
                        prop_assert!(delay >= base.min(max));
                        prop_assert!(delay <= (prev * 3).max(base).min(max) + Duration::from_nanos(1));
                    }
                }
                previous = delay;
            }
        }

        /// An operation that always fails transiently, retried under a deadline:
        /// no delay starts that would end past it, and the whole run ends
        /// within it (paused clock; each attempt takes `attempt_ms`).
        #[test]
        fn retries_never_sleep_past_the_deadline(
            deadline_ms in 1u64..5_000,
            base_ms in 1u64..1_000,
            attempt_ms in 0u64..200,
            max_retries in 0u32..10,
            jitter in jitter(),
            seed in any::<u64>(),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            runtime.block_on(async {
                let deadline = Duration::from_millis(deadline_ms);
                let sleeps = Arc::new(Mutex::new(Vec::new()));
                let start = Instant::now();
                let policy = RetryPolicy::new()
                    .max_retries(max_retries)
                    .base_delay(Duration::from_millis(base_ms))
                    .jitter(jitter)
                    .deadline(deadline)
                    .without_budget()
                    .on_retry({
                        let sleeps = sleeps.clone();
                        move |event| sleeps.lock().unwrap().push((start.elapsed(), event.delay))
                    });
                let attempts = Arc::new(Mutex::new(0u32));
                let result: Result<(), io::Error> = policy
                    .run(|| {
                        let attempts = attempts.clone();
                        async move {
                            *attempts.lock().unwrap() += 1;
                            tokio::time::sleep(Duration::from_millis(attempt_ms)).await;
                            Err(io::Error::from(io::ErrorKind::ConnectionReset))
                        }
                    })
                    .rng(SmallRng::seed_from_u64(seed))
                    .await;
                assert!(result.is_err());
                let sleeps = sleeps.lock().unwrap();
                assert!(sleeps.len() as u32 <= max_retries);
                assert_eq!(*attempts.lock().unwrap(), sleeps.len() as u32 + 1);
                for (at, delay) in sleeps.iter() {
                    assert!(*at + *delay <= deadline, "a sleep from {at:?} for {delay:?} ends past {deadline:?}");
                }
                // The last attempt may start just before the deadline and take
                // its own time; no sleep of the layer's runs past it.
                assert!(start.elapsed() <= deadline + Duration::from_millis(attempt_ms));
            });
        }
    }
}
