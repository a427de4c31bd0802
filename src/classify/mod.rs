//! One vocabulary for every failure.
//!
//! Retry, timeouts, audit and the error handler all ask the same question of a
//! failure: *what kind is it, and may it be tried again?* This module answers it
//! once. An error (walking its whole `source()` chain) or an HTTP response is
//! sorted into an [`ErrorClass`], together with the `Retry-After` delay it
//! carries, as a [`Classification`].
//!
//! | class | from errors | from responses | transient |
//! | --- | --- | --- | --- |
//! | [`Timeout`](ErrorClass::Timeout) | tower / tokio `Elapsed`, io `TimedOut`, hyper timeouts, reqwest timeouts | 408 | yes |
//! | [`Connect`](ErrorClass::Connect) | io `ConnectionRefused`, `NotConnected`, `AddrNotAvailable`, `HostUnreachable`, `NetworkUnreachable`, hyper-util and reqwest connect errors (a connect timeout too) | | yes |
//! | [`Network`](ErrorClass::Network) | io `ConnectionReset`, `ConnectionAborted`, `BrokenPipe`, `UnexpectedEof`, `NetworkDown`, hyper closed / incomplete messages, a reqwest body error without a known cause | | yes |
//! | [`Overloaded`](ErrorClass::Overloaded) | tower `load_shed::Overloaded` | 429, 503 | yes |
//! | [`Server`](ErrorClass::Server) | | other 5xx (502 and 504 are transient) | 502, 504 |
//! | [`Client`](ErrorClass::Client) | | other 4xx | no |
//! | [`Cancelled`](ErrorClass::Cancelled) | a cancelled tokio task, hyper canceled | | no |
//! | [`Panic`](ErrorClass::Panic) | a panicked tokio task | | no |
//! | [`Internal`](ErrorClass::Internal) | anything not recognised | | no |
//!
//! With the `tower-http` feature, [`TraceClassifier`] applies these rules to
//! tower-http's response classification, so `TraceLayer` marks failures as
//! every steadfast layer counts them.
//!
//! A [`Connect`](ErrorClass::Connect) failure proves the request never left this
//! process, which is why the retry layer may resend even a `POST` after one.
//!
//! ```
//! use steadfast::classify::{classify_error, classify_response, ErrorClass};
//! use std::io;
//!
//! let err: steadfast::BoxError = Box::new(io::Error::from(io::ErrorKind::ConnectionRefused));
//! assert_eq!(classify_error(&*err).class(), ErrorClass::Connect);
//!
//! let res = http::Response::builder()
//!     .status(503)
//!     .header("retry-after", "7")
//!     .body(())
//!     .unwrap();
//! let c = classify_response(&res).unwrap();
//! assert_eq!(c.class(), ErrorClass::Overloaded);
//! assert_eq!(c.retry_after(), Some(std::time::Duration::from_secs(7)));
//! ```

mod classifier;
mod error;
mod retry_after;
#[cfg(feature = "tower-http")]
mod trace;

use std::{fmt, time::Duration};

use http::StatusCode;

pub use classifier::{AsError, Classifier, DefaultClassifier};
pub use error::{classify_error, error_chain};
pub use retry_after::{parse_retry_after, parse_retry_after_at, retry_after_from_headers};
#[cfg(feature = "tower-http")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower-http")))]
pub use trace::{ClassifiedFailure, TraceClassifier};

/// What kind of failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// Something took longer than it was allowed to.
    Timeout,
    /// No connection could be made: refused, DNS failure, unreachable. The
    /// request never left, so sending it again is always safe.
    Connect,
    /// The connection failed while in use: reset, broken pipe, closed mid-response.
    Network,
    /// The other side shed load: 429, 503 or a load-shed error. May carry `Retry-After`.
    Overloaded,
    /// A server error (5xx) other than overload.
    Server,
    /// The request itself was wrong (4xx other than 408 and 429): trying again cannot help.
    Client,
    /// The work was cancelled before it finished.
    Cancelled,
    /// The code handling the request panicked.
    Panic,
    /// Anything else: a bug or an unexpected state.
    Internal,
}

impl ErrorClass {
    /// Whether a failure of this class may succeed when tried again.
    ///
    /// `Timeout`, `Connect`, `Network` and `Overloaded` are; see
    /// [`Classification::is_transient`] for the statuses that are too.
    pub const fn is_transient(self) -> bool {
        matches!(
            self,
            Self::Timeout | Self::Connect | Self::Network | Self::Overloaded
        )
    }

    /// A short, stable, lower-case name, for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Network => "network",
            Self::Overloaded => "overloaded",
            Self::Server => "server",
            Self::Client => "client",
            Self::Cancelled => "cancelled",
            Self::Panic => "panic",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A classified failure: its class, the response status it came from (if any)
/// and the `Retry-After` delay it carried (if any, and if trustworthy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    class: ErrorClass,
    status: Option<StatusCode>,
    retry_after: Option<Duration>,
}

impl Classification {
    /// A classification of `class` with no status and no `Retry-After`.
    pub const fn new(class: ErrorClass) -> Self {
        Self {
            class,
            status: None,
            retry_after: None,
        }
    }

    /// Sets the response status this failure came from.
    pub const fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets the delay the failure asked for before trying again.
    pub const fn with_retry_after(mut self, delay: Option<Duration>) -> Self {
        self.retry_after = delay;
        self
    }

    /// The class.
    pub const fn class(&self) -> ErrorClass {
        self.class
    }

    /// The response status, when the failure was a response.
    pub const fn status(&self) -> Option<StatusCode> {
        self.status
    }

    /// The `Retry-After` delay, when one was given and was valid.
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether trying again may succeed: a transient class, or a 502 / 504
    /// response (a gateway whose upstream failed).
    pub fn is_transient(&self) -> bool {
        self.class.is_transient()
            || matches!(
                self.status,
                Some(StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT)
            )
    }
}

impl From<ErrorClass> for Classification {
    fn from(class: ErrorClass) -> Self {
        Self::new(class)
    }
}

/// Classifies a status code alone; `None` for anything below 400.
///
/// ```
/// use steadfast::classify::{classify_status, ErrorClass};
/// use http::StatusCode;
///
/// assert_eq!(classify_status(StatusCode::OK), None);
/// assert_eq!(classify_status(StatusCode::REQUEST_TIMEOUT), Some(ErrorClass::Timeout));
/// assert_eq!(classify_status(StatusCode::TOO_MANY_REQUESTS), Some(ErrorClass::Overloaded));
/// assert_eq!(classify_status(StatusCode::NOT_FOUND), Some(ErrorClass::Client));
/// assert_eq!(classify_status(StatusCode::BAD_GATEWAY), Some(ErrorClass::Server));
/// ```
pub fn classify_status(status: StatusCode) -> Option<ErrorClass> {
    match status {
        StatusCode::REQUEST_TIMEOUT => Some(ErrorClass::Timeout),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            Some(ErrorClass::Overloaded)
        }
        s if s.is_server_error() => Some(ErrorClass::Server),
        s if s.is_client_error() => Some(ErrorClass::Client),
        _ => None,
    }
}

/// Classifies a response by its status; `None` for a response that is not a failure.
///
/// `Retry-After` is read (both RFC 9110 forms) on overload and timeout responses;
/// a malformed, negative or past value is ignored.
pub fn classify_response<B>(response: &http::Response<B>) -> Option<Classification> {
    classify_head(response.status(), response.headers())
}

/// [`classify_response`] from a response's status and headers alone (for
/// response types that are not `http::Response`, such as reqwest's).
pub(crate) fn classify_head(
    status: StatusCode,
    headers: &http::HeaderMap,
) -> Option<Classification> {
    let class = classify_status(status)?;
    let retry_after = match class {
        ErrorClass::Overloaded | ErrorClass::Timeout | ErrorClass::Server => {
            retry_after_from_headers(headers)
        }
        _ => None,
    };
    Some(
        Classification::new(class)
            .with_status(status)
            .with_retry_after(retry_after),
    )
}

#[cfg(test)]
mod tests;
