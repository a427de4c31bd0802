//! Keyed creates that stay single when the idempotency store forgets.
//!
//! steadfast's idempotency layer records a request's completion in its store
//! only after the handler's transaction committed: a process killed between
//! the two leaves the key merely claimed, and the client's retry after the
//! claim expires (`IDEMPOTENCY_LOCK_TTL_SECS`) runs the handler again. A
//! handler that creates a row or queues work therefore also records, in its
//! own transaction, what the key made ([`crate::db::keyed_creates`]), and
//! looks it up first: a retry finds the first run's resource and answers it
//! (same status and body shape) instead of making a second one.

use http::{HeaderMap, StatusCode};
use sqlx::AnyConnection;
use steadfast::idempotency::IdempotencyKey;

use crate::{
    db::keyed_creates::{self, KeyedCreate},
    error::{ApiError, ApiResult},
};

/// How long a key's record answers retries: the idempotency layer's
/// retention (steadfast's default, which koldly keeps). After it the key is
/// new again in both places.
pub const RETENTION_SECS: i64 = 24 * 60 * 60;

/// The `Idempotency-Key` of a creating request and the route it was sent to.
#[derive(Debug, Clone)]
pub struct Keyed {
    key: Option<String>,
    route: String,
}

impl Keyed {
    /// The key of `headers` (none: nothing is recorded) for `route`, the
    /// request's concrete path (`/api/campaigns/{id}/duplicate` with its id),
    /// so the key used on another resource is refused like the layer does.
    /// The layer has checked the key's syntax already.
    pub fn new(headers: &HeaderMap, route: impl Into<String>) -> Self {
        let key = IdempotencyKey::from_headers(headers).ok().flatten();
        Self {
            key: key.map(|k| k.as_str().to_owned()),
            route: route.into(),
        }
    }

    /// The id of the `kind` an earlier request with this key made, if any.
    /// A key that made something on another route is a 422, as the layer
    /// answers a key reused for a different request.
    pub async fn earlier(
        &self,
        conn: &mut AnyConnection,
        user_id: &str,
        kind: &str,
        now: i64,
    ) -> ApiResult<Option<String>> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let Some(made) = keyed_creates::find(conn, user_id, key, now - RETENTION_SECS).await?
        else {
            return Ok(None);
        };
        if made.route != self.route || made.resource_kind != kind {
            return Err(ApiError::status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "This Idempotency-Key was used for a different request.",
            ));
        }
        Ok(Some(made.resource_id))
    }

    /// Records, in the caller's transaction, that this key made the `kind`
    /// `id`. A concurrent request with the key (both past the layer, whose
    /// claim expired) loses on the unique key: a 409 to retry, and its
    /// transaction, with what it made, rolls back.
    pub async fn record(
        &self,
        conn: &mut AnyConnection,
        user_id: &str,
        kind: &str,
        id: &str,
        now: i64,
    ) -> ApiResult<()> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        let made = KeyedCreate {
            route: self.route.clone(),
            resource_kind: kind.to_owned(),
            resource_id: id.to_owned(),
        };
        match keyed_creates::record(conn, user_id, key, &made, now - RETENTION_SECS, now).await {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(ApiError::status(
                StatusCode::CONFLICT,
                "A request with this Idempotency-Key is still being processed; retry.",
            )),
            other => Ok(other?),
        }
    }
}
