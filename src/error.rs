use std::{borrow::Cow, error::Error as StdError, fmt, time::Duration};

use crate::{BoxError, classify::ErrorClass};

/// The error steadfast's own layers fail with.
///
/// It carries the [`ErrorClass`] it belongs to, so [`classify`](crate::classify)
/// recognises it anywhere in a `source()` chain, and the underlying cause, if any.
///
/// ```
/// use steadfast::{Error, ErrorClass};
/// use std::time::Duration;
///
/// let err = Error::new(ErrorClass::Overloaded, "retry budget exhausted")
///     .with_retry_after(Duration::from_secs(1));
/// assert_eq!(err.class(), ErrorClass::Overloaded);
/// assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
/// assert_eq!(err.to_string(), "retry budget exhausted");
/// ```
#[derive(Debug)]
pub struct Error {
    class: ErrorClass,
    message: Cow<'static, str>,
    retry_after: Option<Duration>,
    source: Option<BoxError>,
}

impl Error {
    /// An error of `class` with a message for logs (never shown to clients as is).
    pub fn new(class: ErrorClass, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            class,
            message: message.into(),
            retry_after: None,
            source: None,
        }
    }

    /// Attaches the cause of this error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Attaches how long the caller should wait before trying again.
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// The class of this failure.
    pub fn class(&self) -> ErrorClass {
        self.class
    }

    /// How long to wait before trying again, when known.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}
