//! The fuzz targets' bodies: one function per parser that reads untrusted
//! input, each checking what must hold for any input, not only that it does not
//! panic. `fuzz/` (cargo fuzz, nightly) calls them with `--cfg fuzzing`; the
//! unit test below replays every committed corpus file through them on stable,
//! so every finding stays a regression test. Not part of the API.

/// `Idempotency-Key` values: an accepted key is 1 to 255 printable ASCII
/// characters, and written back as an sf-String it parses to itself.
#[cfg(feature = "idempotency")]
pub fn idempotency_key(data: &[u8]) {
    use crate::idempotency::{IdempotencyKey, MAX_KEY_LEN};

    let Ok(key) = IdempotencyKey::parse(data) else {
        return;
    };
    let text = key.as_str();
    assert!(!text.is_empty() && text.len() <= MAX_KEY_LEN, "{text:?}");
    assert!(text.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{text:?}");
    let mut quoted = String::from("\"");
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    assert_eq!(IdempotencyKey::parse(quoted.as_bytes()).as_ref(), Ok(&key));
    if let Ok(value) = http::HeaderValue::from_bytes(data) {
        let mut headers = http::HeaderMap::new();
        headers.insert(crate::idempotency::IDEMPOTENCY_KEY, value);
        assert_eq!(IdempotencyKey::from_headers(&headers), Ok(Some(key)));
    }
}

/// `Retry-After` values: a delay is at most a year in the seconds form, and
/// a date gives a positive delay that ends exactly at that date.
pub fn retry_after(data: &[u8]) {
    use std::time::{Duration, UNIX_EPOCH};

    let Ok(value) = http::HeaderValue::from_bytes(data) else {
        return;
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_445_412_400);
    let Some(delay) = crate::classify::parse_retry_after_at(&value, now) else {
        return;
    };
    let text = value.to_str().unwrap().trim();
    if text.bytes().all(|b| b.is_ascii_digit()) {
        assert!(delay <= Duration::from_secs(366 * 24 * 3600), "{text:?}");
        assert_eq!(delay.as_secs(), text.parse::<u64>().unwrap());
    } else {
        assert!(!delay.is_zero());
        let at = httpdate::parse_http_date(text).unwrap();
        assert_eq!(now + delay, at, "{text:?}");
    }
}

/// Route rules and lookups, one per line: `P<m><path>` a prefix, `R<m><path>`
/// a pattern, `?<m><path>` a lookup, where `<m>` is `*` (any method), `G`
/// (GET) or `P` (POST). Rules either compile or are refused; a lookup gives
/// what the brute-force reference gives.
#[cfg(any(feature = "timeout", feature = "audit"))]
pub fn route_patterns(data: &[u8]) {
    use crate::route::{Matcher, RuleKind, reference};
    use http::Method;

    let text = String::from_utf8_lossy(data);
    let method = |c: Option<char>| match c {
        Some('G') => Some(Method::GET),
        Some('P') => Some(Method::POST),
        _ => None,
    };
    let mut rules = Vec::new();
    let mut lookups = Vec::new();
    for line in text.lines().take(64) {
        let mut chars = line.chars();
        let (kind, m) = (chars.next(), chars.next());
        let path = chars.as_str().to_owned();
        match kind {
            Some('P') => rules.push((RuleKind::Prefix, method(m), path)),
            Some('R') => rules.push((RuleKind::Pattern, method(m), path)),
            Some('?') => lookups.push((method(m).unwrap_or(Method::PUT), path)),
            _ => {}
        }
    }
    let numbered: Vec<_> = rules
        .into_iter()
        .enumerate()
        .map(|(i, (kind, m, path))| (kind, m, path, i))
        .collect();
    let Ok(matcher) = Matcher::compile(
        numbered
            .iter()
            .map(|(kind, m, path, i)| (*kind, m.as_ref(), path.as_str(), *i)),
    ) else {
        return;
    };
    for (method, path) in &lookups {
        let want = reference::best_match(&numbered, method, path);
        assert_eq!(matcher.lookup(method, path), want, "{method} {path:?}");
        assert_eq!(matcher.walk(method, path), want, "{method} {path:?}");
    }
}

/// The JSON canonicaliser: the canonical form of a JSON document is the same
/// value, is its own canonical form, and does not change with whitespace.
#[cfg(feature = "idempotency")]
pub fn canonical_json(data: &[u8]) {
    use crate::idempotency::fingerprint::canonical;
    use serde_json::Value;

    let Some(canon) = canonical(data) else {
        return;
    };
    let original: Value = serde_json::from_slice(data).unwrap();
    let reparsed: Value = serde_json::from_slice(&canon).unwrap();
    assert_eq!(original, reparsed);
    assert_eq!(canonical(&canon).as_deref(), Some(&canon[..]));
    let pretty = serde_json::to_vec_pretty(&original).unwrap();
    assert_eq!(canonical(&pretty).as_deref(), Some(&canon[..]));
}

/// `X-Forwarded-For` and `Forwarded` chains (the input's lines after the
/// first, each a header line) and trusted ranges (the first line): behind a
/// trusted peer the client is always an address; an untrusted peer is the
/// client whatever the headers say; no peer, no client.
#[cfg(feature = "audit")]
pub fn forwarded(data: &[u8]) {
    use crate::audit::{ForwardedHeader, IpRange, TrustedProxies};
    use std::net::IpAddr;

    let text = String::from_utf8_lossy(data);
    let mut lines = text.lines();
    let ranges: Vec<IpRange> = lines
        .next()
        .unwrap_or("")
        .split(' ')
        .filter_map(|r| r.parse().ok())
        .collect();
    let mut proxies = TrustedProxies::none().trust("10.0.0.0/8".parse::<IpRange>().unwrap());
    for range in ranges {
        proxies = proxies.trust(range);
    }
    let mut xff = http::HeaderMap::new();
    let mut fwd = http::HeaderMap::new();
    for line in lines.take(8) {
        if let Ok(value) = http::HeaderValue::from_str(line) {
            xff.append("x-forwarded-for", value.clone());
            fwd.append(http::header::FORWARDED, value);
        }
    }
    let peer: IpAddr = "10.0.0.1".parse().unwrap();
    for (proxies, headers) in [
        (proxies.clone(), &xff),
        (proxies.header(ForwardedHeader::Forwarded), &fwd),
    ] {
        let client = proxies.client_ip(Some(peer), headers).expect("an address");
        assert_eq!(client, client.to_canonical());
        let untrusted = "203.0.113.9".parse().unwrap();
        if !proxies.is_trusted(untrusted) {
            assert_eq!(proxies.client_ip(Some(untrusted), headers), Some(untrusted));
        }
        assert_eq!(proxies.client_ip(None, headers), None);
    }
}

/// Problem documents read back: one that parses writes out as a document that
/// parses to the same problem, and becomes a response without panicking.
pub fn problem_document(data: &[u8]) {
    use crate::Problem;

    let Ok(problem) = serde_json::from_slice::<Problem>(data) else {
        return;
    };
    let again: Problem = serde_json::from_slice(&problem.to_bytes()).unwrap();
    assert_eq!(again, problem);
    let response = problem.to_response::<bytes::Bytes>();
    assert_eq!(response.status(), problem.status());
    assert!(crate::problem::is_problem_json(response.headers()));
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

    #[cfg(feature = "idempotency")]
    #[test]
    fn idempotency_key_corpus() {
        replay("idempotency_key", super::idempotency_key);
    }

    #[test]
    fn retry_after_corpus() {
        replay("retry_after", super::retry_after);
    }

    #[cfg(any(feature = "timeout", feature = "audit"))]
    #[test]
    fn route_patterns_corpus() {
        replay("route_patterns", super::route_patterns);
    }

    #[cfg(feature = "idempotency")]
    #[test]
    fn canonical_json_corpus() {
        replay("canonical_json", super::canonical_json);
    }

    #[cfg(feature = "audit")]
    #[test]
    fn forwarded_corpus() {
        replay("forwarded", super::forwarded);
    }

    #[test]
    fn problem_document_corpus() {
        replay("problem_document", super::problem_document);
    }
}
