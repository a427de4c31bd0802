//! The `analytics_events` aggregate: recorded events and the activity feed.

use serde::Serialize;
use serde_json::Value;
use sqlx::{AnyConnection, AnyPool, Row};

use super::new_id;
use crate::{
    analytics::Event,
    pagination::{Cursor, PageRequest},
};

/// Stores `event`.
pub async fn insert(
    conn: &mut AnyConnection,
    event: &Event,
    occurred_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO analytics_events (id, user_id, campaign_id, prospect_id, event_type, metadata, occurred_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new_id())
    .bind(&event.user_id)
    .bind(event.campaign_id.as_deref())
    .bind(event.prospect_id.as_deref())
    .bind(event.kind.name())
    .bind(Value::Object(event.metadata.clone()).to_string())
    .bind(occurred_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// One entry of the activity feed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Activity {
    /// Text UUID.
    pub id: String,
    /// `signup`, `campaign_created`, `email_sent`...
    #[serde(rename = "type")]
    pub event_type: String,
    /// The campaign concerned.
    pub campaign_id: Option<String>,
    /// The prospect concerned.
    pub prospect_id: Option<String>,
    /// Details.
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// Unix seconds.
    pub occurred_at: i64,
}

impl Activity {
    /// Its place in the feed's order.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            group: 0,
            created_at: self.occurred_at,
            id: self.id.clone(),
        }
    }
}

/// The feed's first page: `$1`'s events, newest first, `$2` at most.
pub const FEED_SQL: &str = "SELECT id, event_type, campaign_id, prospect_id, metadata, occurred_at \
     FROM analytics_events WHERE user_id = $1 ORDER BY occurred_at DESC, id DESC LIMIT $2";

/// A page of `user_id`'s events, newest first (keyset on `(occurred_at, id)`).
pub async fn feed(
    pool: &AnyPool,
    user_id: &str,
    page: &PageRequest,
) -> Result<Vec<Activity>, sqlx::Error> {
    let rows = match &page.after {
        None => {
            sqlx::query(FEED_SQL)
            .bind(user_id)
            .bind(page.fetch())
            .fetch_all(pool)
            .await?
        }
        Some(after) => {
            sqlx::query(
                "SELECT id, event_type, campaign_id, prospect_id, metadata, occurred_at FROM analytics_events \
                 WHERE user_id = $1 AND (occurred_at < $2 OR (occurred_at = $2 AND id < $3)) \
                 ORDER BY occurred_at DESC, id DESC LIMIT $4",
            )
            .bind(user_id)
            .bind(after.created_at)
            .bind(&after.id)
            .bind(page.fetch())
            .fetch_all(pool)
            .await?
        }
    };
    rows.iter()
        .map(|row| {
            let metadata: String = row.try_get("metadata")?;
            Ok(Activity {
                id: row.try_get("id")?,
                event_type: row.try_get("event_type")?,
                campaign_id: row.try_get("campaign_id")?,
                prospect_id: row.try_get("prospect_id")?,
                metadata: serde_json::from_str(&metadata).unwrap_or(Value::Null),
                occurred_at: row.try_get("occurred_at")?,
            })
        })
        .collect()
}
