use std::{error::Error as StdError, fmt, io};

use super::{Classification, ErrorClass};

/// Classifies an error by walking its `source()` chain, outermost first.
///
/// The first link that is recognised decides; an error nothing in the chain
/// explains is [`ErrorClass::Internal`]. An `io::Error` that wraps a custom error
/// is looked into too (its `source()` skips the wrapped error itself).
pub fn classify_error(error: &(dyn StdError + 'static)) -> Classification {
    let mut link = Some(error);
    while let Some(err) = link {
        if let Some(found) = classify_link(err) {
            return found;
        }
        link = err.source();
    }
    Classification::new(ErrorClass::Internal)
}

fn classify_link(err: &(dyn StdError + 'static)) -> Option<Classification> {
    if let Some(own) = err.downcast_ref::<crate::Error>() {
        return Some(Classification::new(own.class()).with_retry_after(own.retry_after()));
    }
    if err.is::<tower::timeout::error::Elapsed>() || err.is::<tokio::time::error::Elapsed>() {
        return Some(ErrorClass::Timeout.into());
    }
    if err.is::<tower::load_shed::error::Overloaded>() {
        return Some(ErrorClass::Overloaded.into());
    }
    if let Some(io) = err.downcast_ref::<io::Error>() {
        if let Some(class) = classify_io_kind(io.kind()) {
            return Some(class.into());
        }
        // `io::Error::source` skips a wrapped custom error; look into it directly.
        return io
            .get_ref()
            .map(|inner| classify_error(inner))
            .filter(|c| c.class() != ErrorClass::Internal);
    }
    if let Some(join) = err.downcast_ref::<tokio::task::JoinError>() {
        return Some(if join.is_panic() {
            ErrorClass::Panic.into()
        } else {
            ErrorClass::Cancelled.into()
        });
    }
    #[cfg(feature = "reqwest")]
    if let Some(found) = reqwest_errors::classify(err) {
        return Some(found);
    }
    #[cfg(feature = "hyper")]
    if let Some(found) = hyper_errors::classify(err) {
        return Some(found);
    }
    None
}

fn classify_io_kind(kind: io::ErrorKind) -> Option<ErrorClass> {
    use io::ErrorKind::*;
    Some(match kind {
        ConnectionRefused | NotConnected | AddrNotAvailable | HostUnreachable
        | NetworkUnreachable => ErrorClass::Connect,
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NetworkDown
        | WriteZero => ErrorClass::Network,
        TimedOut => ErrorClass::Timeout,
        _ => return None,
    })
}

#[cfg(feature = "hyper")]
mod hyper_errors {
    use std::error::Error as StdError;

    use super::super::{Classification, ErrorClass};

    pub(super) fn classify(err: &(dyn StdError + 'static)) -> Option<Classification> {
        if let Some(client) = err.downcast_ref::<hyper_util::client::legacy::Error>() {
            if client.is_connect() {
                return Some(ErrorClass::Connect.into());
            }
            // Otherwise the cause (a hyper or io error) further down decides.
            return None;
        }
        let hyper = err.downcast_ref::<hyper::Error>()?;
        let class = if hyper.is_timeout() {
            ErrorClass::Timeout
        } else if hyper.is_incomplete_message() || hyper.is_closed() || hyper.is_canceled() {
            // hyper "canceled" means the connection went away before the response.
            ErrorClass::Network
        } else if hyper.is_parse() || hyper.is_parse_status() || hyper.is_body_write_aborted() {
            ErrorClass::Network
        } else {
            return None;
        };
        Some(class.into())
    }
}

#[cfg(feature = "reqwest")]
mod reqwest_errors {
    use std::error::Error as StdError;

    use super::super::{Classification, ErrorClass, classify_error, classify_status};

    pub(super) fn classify(err: &(dyn StdError + 'static)) -> Option<Classification> {
        // reqwest-middleware's error is `transparent`: its `source()` skips the
        // error it wraps, so the wrapped error is classified here.
        if let Some(wrapper) = err.downcast_ref::<reqwest_middleware::Error>() {
            return Some(match wrapper {
                reqwest_middleware::Error::Reqwest(inner) => classify_error(inner),
                reqwest_middleware::Error::Middleware(inner) => {
                    let inner: &(dyn StdError + Send + Sync + 'static) = &**inner;
                    classify_error(inner)
                }
            });
        }
        let error = err.downcast_ref::<reqwest::Error>()?;
        // A connect timeout is a connect failure: the request never left.
        if error.is_connect() {
            return Some(ErrorClass::Connect.into());
        }
        if error.is_timeout() {
            return Some(ErrorClass::Timeout.into());
        }
        if let Some(status) = error.status() {
            let class = classify_status(status)?;
            return Some(Classification::new(class).with_status(status));
        }
        if error.is_body() {
            // A body that failed in transit: the cause (a reset, a closed
            // connection) decides, and an unknown one is a network failure.
            let cause = error
                .source()
                .map(classify_error)
                .filter(|c| c.class() != ErrorClass::Internal);
            return Some(cause.unwrap_or(ErrorClass::Network.into()));
        }
        // Otherwise the cause (hyper-util's, hyper's or an io error) further down decides.
        None
    }
}

/// Formats an error with its whole `source()` chain, `outer: inner: root`, for logs.
///
/// ```
/// use steadfast::classify::error_chain;
/// let err = steadfast::Error::new(steadfast::ErrorClass::Connect, "upstream down")
///     .with_source(std::io::Error::other("connection refused"));
/// assert_eq!(error_chain(&err).to_string(), "upstream down: connection refused");
/// ```
pub fn error_chain<'a>(error: &'a (dyn StdError + 'static)) -> impl fmt::Display + 'a {
    ErrorChain(error)
}

struct ErrorChain<'a>(&'a (dyn StdError + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut link = self.0.source();
        while let Some(err) = link {
            write!(f, ": {err}")?;
            link = err.source();
        }
        Ok(())
    }
}
