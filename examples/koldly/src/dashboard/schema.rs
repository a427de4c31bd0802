//! The OpenAPI description of the dashboards' answers (the handlers write
//! the JSON these structs document).
#![allow(dead_code)]

/// Campaign counts.
#[derive(Debug, utoipa::ToSchema)]
pub struct DashboardCampaignCounts {
    /// Not archived.
    total: i64,
    /// Not archived and `active`.
    active: i64,
}

/// Email counts.
#[derive(Debug, utoipa::ToSchema)]
pub struct DashboardEmailCounts {
    /// Drafts awaiting a decision.
    awaiting_approval: i64,
    /// Approved, not sent yet.
    approved: i64,
    /// Sent.
    sent: i64,
}

/// `GET /api/dashboard/stats`.
#[derive(Debug, utoipa::ToSchema)]
pub struct StatsView {
    /// Campaigns.
    campaigns: DashboardCampaignCounts,
    /// Prospects.
    prospects: i64,
    /// Emails.
    emails: DashboardEmailCounts,
    /// Replies received.
    replies: i64,
    /// Replies per 100 sent, one decimal.
    reply_rate: f64,
}

/// One local day.
#[derive(Debug, utoipa::ToSchema)]
pub struct DayView {
    /// `YYYY-MM-DD` in the user's time zone.
    date: String,
    /// Emails sent that day.
    sent: i64,
    /// Replies received that day.
    replies: i64,
}

/// `GET /api/dashboard/email-activity`.
#[derive(Debug, utoipa::ToSchema)]
pub struct EmailActivityView {
    /// The IANA time zone the days are counted in.
    timezone: String,
    /// One row per local day, oldest first.
    days: Vec<DayView>,
}

/// `GET /api/dashboard/campaigns`.
#[derive(Debug, utoipa::ToSchema)]
pub struct CampaignsView {
    /// The newest campaigns not archived.
    items: Vec<crate::db::dashboard::CampaignSummary>,
}

/// The user's time zone.
#[derive(Debug, utoipa::ToSchema)]
pub struct TimezoneView {
    /// IANA name, e.g. `Europe/Paris`.
    timezone: String,
}
