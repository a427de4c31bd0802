//! Product analytics: the key moments of an account (signup, login, a
//! campaign created, prospects imported, an email approved or sent, a reply,
//! a checkout started, a plan changed) as rows of `analytics_events`, which
//! the activity feed (`GET /api/dashboard/activity`) and the admin metrics read.
//!
//! [`record`] is the call for request handlers and engines: it writes on a
//! tracked background task ([`Background`]), after the caller moved on, and
//! a failure is a log line, never the caller's error. An engine that wants
//! the event exactly when its own change commits writes it in its
//! transaction with [`record_in`] instead.
//!
//! ```no_run
//! # fn f(state: &koldly::state::AppState) {
//! use koldly::analytics::{self, Event, EventKind};
//! analytics::record(
//!     state,
//!     Event::new("user-id", EventKind::EmailSent)
//!         .campaign("campaign-id")
//!         .prospect("prospect-id"),
//! );
//! # }
//! ```

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::{background::Background, clock::Clock, db::Db, state::AppState};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// An account was created.
    Signup,
    /// A user logged in.
    Login,
    /// A campaign was created.
    CampaignCreated,
    /// Prospects were imported into a campaign (`metadata.count`).
    ProspectsImported,
    /// A drafted email was approved.
    EmailApproved,
    /// An email went out (the sending engine).
    EmailSent,
    /// A prospect replied (the inbox engine).
    ReplyReceived,
    /// A Stripe checkout was started (`metadata.plan`).
    CheckoutStarted,
    /// Stripe moved the user to another plan (`metadata.from`, `metadata.to`).
    PlanChanged,
}

impl EventKind {
    /// Its `event_type` in the table and the API.
    pub fn name(self) -> &'static str {
        match self {
            Self::Signup => "signup",
            Self::Login => "login",
            Self::CampaignCreated => "campaign_created",
            Self::ProspectsImported => "prospects_imported",
            Self::EmailApproved => "email_approved",
            Self::EmailSent => "email_sent",
            Self::ReplyReceived => "reply_received",
            Self::CheckoutStarted => "checkout_started",
            Self::PlanChanged => "plan_changed",
        }
    }
}

/// One event: whose, what, about which campaign or prospect, and details.
#[derive(Debug, Clone)]
pub struct Event {
    /// The account.
    pub user_id: String,
    /// What happened.
    pub kind: EventKind,
    /// The campaign concerned.
    pub campaign_id: Option<String>,
    /// The prospect concerned.
    pub prospect_id: Option<String>,
    /// Details (a JSON object); never a secret.
    pub metadata: Map<String, Value>,
}

impl Event {
    /// `kind` happened to `user_id`.
    pub fn new(user_id: impl Into<String>, kind: EventKind) -> Self {
        Self {
            user_id: user_id.into(),
            kind,
            campaign_id: None,
            prospect_id: None,
            metadata: Map::new(),
        }
    }

    /// About this campaign.
    pub fn campaign(mut self, id: impl Into<String>) -> Self {
        self.campaign_id = Some(id.into());
        self
    }

    /// About this prospect.
    pub fn prospect(mut self, id: impl Into<String>) -> Self {
        self.prospect_id = Some(id.into());
        self
    }

    /// With `key: value` in its metadata.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.to_owned(), value.into());
        self
    }
}

/// Records `event` in the background, dated by the server's clock now.
pub fn record(state: &AppState, event: Event) {
    record_with(&state.background, &state.db, &state.config.clock, event);
}

/// [`record`] for code that holds the parts rather than the [`AppState`]
/// (a job handler, an engine).
pub fn record_with(background: &Background, db: &Db, clock: &Arc<dyn Clock>, event: Event) {
    let occurred_at = clock.now();
    let db = db.clone();
    background.spawn(async move {
        let mut conn = match db.pool.acquire().await {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!(kind = event.kind.name(), error = %err, "analytics event dropped");
                return;
            }
        };
        if let Err(err) = record_in(&mut conn, &event, occurred_at).await {
            tracing::warn!(kind = event.kind.name(), error = %err, "analytics event dropped");
        }
    });
}

/// Writes `event` on `conn` now (inside the caller's transaction, if any).
pub async fn record_in(
    conn: &mut sqlx::AnyConnection,
    event: &Event,
    occurred_at: i64,
) -> Result<(), sqlx::Error> {
    crate::db::analytics::insert(conn, event, occurred_at).await
}
