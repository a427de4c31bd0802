use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, header::RETRY_AFTER};

/// The longest delay accepted as `delay-seconds`; larger numbers are treated as garbage.
const MAX_DELAY_SECONDS: u64 = 366 * 24 * 60 * 60;

/// Reads `Retry-After` from headers, relative to now. See [`parse_retry_after_at`].
pub fn retry_after_from_headers(headers: &HeaderMap) -> Option<Duration> {
    // Two values disagree about when to come back: trust neither.
    let mut values = headers.get_all(RETRY_AFTER).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse_retry_after(value)
}

/// Parses one `Retry-After` value relative to now. See [`parse_retry_after_at`].
pub fn parse_retry_after(value: &HeaderValue) -> Option<Duration> {
    parse_retry_after_at(value, SystemTime::now())
}

/// Parses one `Retry-After` value in either RFC 9110 form, relative to `now`.
///
/// - `delay-seconds` (`"120"`): that many seconds; digits only, so a negative or
///   fractional number is rejected, as is one over a year.
/// - `HTTP-date` (`"Wed, 21 Oct 2015 07:28:00 GMT"`): the time until then; a date in
///   the past is rejected rather than read as "now".
///
/// Anything else is `None`: an untrustworthy value is ignored, never guessed at.
///
/// ```
/// use steadfast::classify::parse_retry_after_at;
/// use http::HeaderValue;
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
///
/// let now = UNIX_EPOCH + Duration::from_secs(1_445_412_400); // 2015-10-21 07:26:40 GMT
/// let v = |s| HeaderValue::from_static(s);
/// assert_eq!(parse_retry_after_at(&v("120"), now), Some(Duration::from_secs(120)));
/// assert_eq!(
///     parse_retry_after_at(&v("Wed, 21 Oct 2015 07:28:00 GMT"), now),
///     Some(Duration::from_secs(80))
/// );
/// assert_eq!(parse_retry_after_at(&v("-5"), now), None);
/// assert_eq!(parse_retry_after_at(&v("soon"), now), None);
/// assert_eq!(parse_retry_after_at(&v("Tue, 20 Oct 2015 07:28:00 GMT"), now), None);
/// ```
pub fn parse_retry_after_at(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if text.is_empty() {
        return None;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let seconds: u64 = text.parse().ok()?;
        return (seconds <= MAX_DELAY_SECONDS).then(|| Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    at.duration_since(now).ok().filter(|d| !d.is_zero())
}
