//! How failures become answers: every handler error is an RFC 9457 problem.
//!
//! Handlers return `Result<_, ApiError>`. Client mistakes carry a precise
//! status and detail; database and other internal failures are logged here with
//! their cause and answered with a generic 500 (or 503 with `Retry-After`
//! when the pool is exhausted or the database turned a statement away for
//! contention), so no internal text reaches a client.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use steadfast::Problem;

/// Problem type URIs koldly uses.
pub mod types {
    /// The request's content is invalid.
    pub const VALIDATION: &str = "https://koldly.dev/problems/validation";
    /// The email address is taken.
    pub const EMAIL_TAKEN: &str = "https://koldly.dev/problems/email-taken";
    /// Bad credentials or token.
    pub const UNAUTHORIZED: &str = "https://koldly.dev/problems/unauthorized";
    /// A single-use token is unknown, used or expired.
    pub const INVALID_TOKEN: &str = "https://koldly.dev/problems/invalid-token";
    /// Too many attempts.
    pub const RATE_LIMITED: &str = "https://koldly.dev/problems/rate-limited";
    /// No such resource (or another account's: the answer is the same).
    pub const NOT_FOUND: &str = "https://koldly.dev/problems/not-found";
}

/// A handler failure: a problem to answer with.
#[derive(Debug)]
pub struct ApiError(pub Box<Problem>);

/// The result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// 422 with a detail naming the field and the rule.
    pub fn validation(detail: impl Into<String>) -> Self {
        Self::from(
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
                .with_type(types::VALIDATION)
                .with_title("Invalid request content")
                .with_detail(detail.into()),
        )
    }

    /// 401 with `WWW-Authenticate: Bearer`; one detail for every cause.
    pub fn unauthorized(detail: &'static str) -> Self {
        Self::from(
            Problem::new(StatusCode::UNAUTHORIZED)
                .with_type(types::UNAUTHORIZED)
                .with_detail(detail)
                .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")),
        )
    }

    /// 400 for an unknown, used or expired single-use token.
    pub fn invalid_token() -> Self {
        Self::from(
            Problem::new(StatusCode::BAD_REQUEST)
                .with_type(types::INVALID_TOKEN)
                .with_title("Invalid or expired token")
                .with_detail(
                    "This link is invalid, was already used, or has expired. Request a new one.",
                ),
        )
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(retry_after: Duration) -> Self {
        Self::from(
            Problem::new(StatusCode::TOO_MANY_REQUESTS)
                .with_type(types::RATE_LIMITED)
                .with_detail("Too many attempts from this address; wait before trying again.")
                .with_retry_after(retry_after),
        )
    }

    /// 404 for a resource that does not exist or belongs to another account:
    /// the two are answered alike, so ids of other accounts reveal nothing.
    pub fn not_found(what: &str) -> Self {
        Self::from(
            Problem::new(StatusCode::NOT_FOUND)
                .with_type(types::NOT_FOUND)
                .with_title("Not found")
                .with_detail(format!("No {what} with this id.")),
        )
    }

    /// A problem with a status and detail.
    pub fn status(status: StatusCode, detail: impl Into<String>) -> Self {
        Self::from(Problem::new(status).with_detail(detail.into()))
    }

    /// 500: logs `err` and answers without naming it.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{context}");
        Self::from(Problem::new(StatusCode::INTERNAL_SERVER_ERROR).with_detail(
            "The server failed to handle the request. The failure was logged under this request's id.",
        ))
    }
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        Self(Box::new(problem))
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut => {
                tracing::error!(error = %err, "database pool exhausted");
                Self::from(
                    Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                        .with_detail("The database is busy. Try again shortly.")
                        .with_retry_after(Duration::from_secs(1)),
                )
            }
            err if is_contention(&err) => {
                tracing::warn!(error = %err, "database contention");
                Self::from(
                    Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                        .with_detail("The database is busy. Try again shortly.")
                        .with_retry_after(Duration::from_secs(1)),
                )
            }
            err if is_unreachable(&err) => {
                tracing::error!(error = %err, "database unreachable");
                Self::from(
                    Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                        .with_detail("The database is unavailable. Try again shortly.")
                        .with_retry_after(Duration::from_secs(1)),
                )
            }
            err => Self::internal("database error", err),
        }
    }
}

/// Whether `err` says the database could not be reached or the connection
/// broke (reset, closed, a failed TLS handshake, the server shutting down),
/// rather than that the statement was wrong: the pool replaces the connection,
/// so a retry may succeed. Answered 503 like an exhausted pool.
pub fn is_unreachable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Class 08 (connection exception), 57P01–57P03 (the server shutting
        // down or starting up).
        err => err
            .as_database_error()
            .and_then(|db| db.code())
            .is_some_and(|code| {
                code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
            }),
    }
}

/// Whether `err` is the database turning a statement away for contention that
/// clears by itself, so a retry may succeed: SQLite busy or locked (another
/// writer held the lock past the busy timeout), a PostgreSQL serialization
/// failure, deadlock or lock timeout.
pub fn is_contention(err: &sqlx::Error) -> bool {
    let Some(db) = err.as_database_error() else {
        return false;
    };
    let Some(code) = db.code() else {
        return false;
    };
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // Extended result codes keep the primary code in the low byte.
        const SQLITE_BUSY: i32 = 5;
        const SQLITE_LOCKED: i32 = 6;
        return code
            .parse::<i32>()
            .is_ok_and(|c| matches!(c & 0xff, SQLITE_BUSY | SQLITE_LOCKED));
    }
    matches!(code.as_ref(), "40001" | "40P01" | "55P03")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (*self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, Executor};

    use super::*;

    #[tokio::test]
    async fn a_busy_sqlite_database_is_a_503() {
        sqlx::any::install_default_drivers();
        let path = std::env::temp_dir().join(format!("koldly-busy-{}.db", uuid::Uuid::new_v4()));
        let url = format!("sqlite:{}?mode=rwc", path.display());
        let mut holder = sqlx::AnyConnection::connect(&url).await.unwrap();
        let mut other = sqlx::AnyConnection::connect(&url).await.unwrap();
        other.execute("PRAGMA busy_timeout = 0").await.unwrap();
        holder.execute("BEGIN IMMEDIATE").await.unwrap();
        let err = other.execute("BEGIN IMMEDIATE").await.unwrap_err();
        assert!(is_contention(&err), "{err}");
        assert_eq!(
            ApiError::from(err).0.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert!(!is_contention(&sqlx::Error::RowNotFound));
        holder.execute("ROLLBACK").await.unwrap();
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[test]
    fn a_broken_connection_is_a_503_and_a_bad_statement_a_500() {
        let reset = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(is_unreachable(&reset));
        let problem = ApiError::from(reset).0;
        assert_eq!(problem.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            problem.headers().contains_key(http::header::RETRY_AFTER),
            "a 503 says when to retry"
        );
        assert!(is_unreachable(&sqlx::Error::PoolClosed));
        assert!(!is_unreachable(&sqlx::Error::RowNotFound));
        assert_eq!(
            ApiError::from(sqlx::Error::ColumnNotFound("x".into()))
                .0
                .status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
