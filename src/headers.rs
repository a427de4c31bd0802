//! Header lookups shared by the layers.

use http::{HeaderMap, HeaderName};

/// The header a request id is read from by default (what tower-http's
/// `SetRequestIdLayer::x_request_id` sets on the request).
#[cfg(any(feature = "error-handler", feature = "audit"))]
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Whether `headers` holds `name`. A usual request carries a dozen headers or
/// fewer, mostly standard ones: comparing names is cheaper than hashing a
/// custom name for a map lookup, so small maps are scanned.
#[inline]
pub(crate) fn contains(headers: &HeaderMap, name: &HeaderName) -> bool {
    if headers.keys_len() <= 16 {
        headers.keys().any(|have| have == name)
    } else {
        headers.contains_key(name)
    }
}

/// The value of `name`, found as [`contains`] finds it.
#[cfg(any(feature = "error-handler", feature = "audit"))]
#[inline]
pub(crate) fn get<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h http::HeaderValue> {
    if !contains(headers, name) {
        return None;
    }
    headers.get(name)
}

#[cfg(all(test, feature = "error-handler"))]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn finds_a_header_in_small_and_large_maps() {
        let name = HeaderName::from_static("x-probe");
        let mut headers = HeaderMap::new();
        assert!(!contains(&headers, &name));
        headers.insert(name.clone(), HeaderValue::from_static("1"));
        assert_eq!(get(&headers, &name).unwrap(), "1");
        for i in 0..20 {
            let other = HeaderName::try_from(format!("x-other-{i}")).unwrap();
            headers.insert(other, HeaderValue::from_static("0"));
        }
        assert!(headers.keys_len() > 16);
        assert_eq!(get(&headers, &name).unwrap(), "1");
        assert!(!contains(&headers, &X_REQUEST_ID));
    }
}
