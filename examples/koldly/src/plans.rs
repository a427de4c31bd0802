//! Plans and their limits: the one table of entitlements every check reads.
//!
//! | plan    | active campaigns | prospects / month | AI budget / month |
//! |---------|------------------|-------------------|-------------------|
//! | free    | 1                | 25                | 500 ¢             |
//! | starter | 1                | 100               | 1000 ¢            |
//! | growth  | 5                | 500               | 5000 ¢            |
//! | scale   | unlimited        | 2000              | 20000 ¢           |
//!
//! An active campaign is one that is not archived, whatever its lifecycle
//! status. Prospects are counted when imported, per calendar month (UTC), in
//! `plan_usage`: deleting them gives nothing back. A user whose
//! `subscription_plan` names no plan here has the free plan's limits.
//!
//! The AI budget is the language model's ([`crate::db::ai_usage`]): every
//! paid call reserves its most possible cost from
//! [`Entitlements::ai_budget_cents_per_month`] before it is sent and settles
//! the real cost after it ([`ai_budget_microcents`] converts); a generation
//! request is refused up front by [`check_ai_budget`] when the month's budget
//! is already used up.
//!
//! Checks are atomic: a handler opens [`crate::db::usage::begin_locked`] (the
//! user's row locked in PostgreSQL, an immediate transaction in SQLite), reads
//! the usage, calls [`check`] and writes in that transaction, so concurrent
//! requests are serialised per user and never overshoot. A refusal answers 403
//! with `type` ending in `/plan-limit` and the `limit`, `plan`, `usage`,
//! `allowed` and `requested` amounts as members.

use http::StatusCode;
use serde::Serialize;
use steadfast::Problem;

use sqlx::{Any, Transaction};

use crate::{
    db::{Db, ai_usage, usage},
    error::ApiError,
};

/// The problem type of a refusal.
pub const PLAN_LIMIT_TYPE: &str = "https://koldly.dev/problems/plan-limit";

/// A subscription plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    /// The plan every account starts on.
    Free,
    /// The first paid plan.
    Starter,
    /// Several campaigns.
    Growth,
    /// No campaign limit.
    Scale,
}

/// What a plan allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entitlements {
    /// Campaigns not archived at once; `None` for unlimited.
    pub active_campaigns: Option<i64>,
    /// Prospects imported per calendar month.
    pub prospects_per_month: i64,
    /// Language-model spending per calendar month, in US cents.
    pub ai_budget_cents_per_month: i64,
}

/// The entitlements of every plan, cheapest first.
pub const ENTITLEMENTS: [(Plan, Entitlements); 4] = [
    (
        Plan::Free,
        Entitlements {
            active_campaigns: Some(1),
            prospects_per_month: 25,
            ai_budget_cents_per_month: 500,
        },
    ),
    (
        Plan::Starter,
        Entitlements {
            active_campaigns: Some(1),
            prospects_per_month: 100,
            ai_budget_cents_per_month: 1000,
        },
    ),
    (
        Plan::Growth,
        Entitlements {
            active_campaigns: Some(5),
            prospects_per_month: 500,
            ai_budget_cents_per_month: 5000,
        },
    ),
    (
        Plan::Scale,
        Entitlements {
            active_campaigns: None,
            prospects_per_month: 2000,
            ai_budget_cents_per_month: 20000,
        },
    ),
];

impl Plan {
    /// The plan `users.subscription_plan` names; free for anything unknown.
    pub fn from_name(name: &str) -> Self {
        ENTITLEMENTS
            .iter()
            .map(|(plan, _)| *plan)
            .find(|plan| plan.name().eq_ignore_ascii_case(name.trim()))
            .unwrap_or(Self::Free)
    }

    /// Its name, as stored and shown.
    pub fn name(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Starter => "starter",
            Self::Growth => "growth",
            Self::Scale => "scale",
        }
    }

    /// What it allows.
    pub fn entitlements(self) -> Entitlements {
        ENTITLEMENTS
            .iter()
            .find(|(plan, _)| *plan == self)
            .map(|(_, e)| *e)
            .expect("every plan is in ENTITLEMENTS")
    }
}

/// A metered limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Campaigns not archived.
    ActiveCampaigns,
    /// Prospects imported this month.
    ProspectsPerMonth,
    /// Language-model spending this month, in cents.
    AiBudgetCentsPerMonth,
}

impl Limit {
    /// Its name in problems.
    pub fn name(self) -> &'static str {
        match self {
            Self::ActiveCampaigns => "active_campaigns",
            Self::ProspectsPerMonth => "prospects_per_month",
            Self::AiBudgetCentsPerMonth => "ai_budget_cents_per_month",
        }
    }

    /// What `plan` allows of it; `None` for unlimited.
    pub fn allowed(self, plan: Plan) -> Option<i64> {
        let e = plan.entitlements();
        match self {
            Self::ActiveCampaigns => e.active_campaigns,
            Self::ProspectsPerMonth => Some(e.prospects_per_month),
            Self::AiBudgetCentsPerMonth => Some(e.ai_budget_cents_per_month),
        }
    }
}

/// A refused request: taking `requested` more would pass the plan's limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitExceeded {
    /// Which limit.
    pub limit: Limit,
    /// The user's plan.
    pub plan: Plan,
    /// What is used already.
    pub usage: i64,
    /// What the request would add.
    pub requested: i64,
    /// What the plan allows.
    pub allowed: i64,
}

/// Whether `plan` allows `requested` more of `limit` on top of `usage`: the
/// check every limited action calls (under the lock described in the module
/// docs), the AI budget's reservations included.
pub fn check(plan: Plan, limit: Limit, usage: i64, requested: i64) -> Result<(), LimitExceeded> {
    match limit.allowed(plan) {
        Some(allowed) if usage.saturating_add(requested) > allowed => Err(LimitExceeded {
            limit,
            plan,
            usage,
            requested,
            allowed,
        }),
        _ => Ok(()),
    }
}

impl From<LimitExceeded> for ApiError {
    fn from(e: LimitExceeded) -> Self {
        ApiError::from(
            Problem::new(StatusCode::FORBIDDEN)
                .with_type(PLAN_LIMIT_TYPE)
                .with_title("Plan limit reached")
                .with_detail(format!(
                    "The {} plan allows {} {}; {} used, this request needs {} more. Upgrade the plan or free some up.",
                    e.plan.name(),
                    e.allowed,
                    e.limit.name(),
                    e.usage,
                    e.requested
                ))
                .with_extension("limit", e.limit.name())
                .with_extension("plan", e.plan.name())
                .with_extension("usage", e.usage)
                .with_extension("allowed", e.allowed)
                .with_extension("requested", e.requested),
        )
    }
}

/// Opens the transaction a plan-limited change runs in, holding the user's
/// limit lock (see the module docs), and returns it with the user's plan read
/// under that lock. A user deleted meanwhile is a 401, as an unknown token is.
pub async fn begin_limited(
    db: &Db,
    user_id: &str,
) -> Result<(Transaction<'static, Any>, Plan), ApiError> {
    let locked = usage::begin_locked(db, user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("A valid bearer token is required."))?;
    Ok((locked.tx, Plan::from_name(&locked.plan_name)))
}

/// The monthly AI budget of `plan` in microcents (1e-6 cent), the unit of
/// [`crate::db::ai_usage`].
pub fn ai_budget_microcents(plan: Plan) -> i64 {
    plan.entitlements()
        .ai_budget_cents_per_month
        .saturating_mul(1_000_000)
}

/// Refuses (403 plan-limit) a request for language-model work when the
/// month's settled spend and open reservations of `user_id` already use up
/// the plan's AI budget. Each call still reserves its own cost before it is
/// sent, so this is the early, friendly refusal; the reservation is the
/// guarantee.
pub async fn check_ai_budget(db: &Db, user_id: &str, plan: Plan, now: i64) -> Result<(), ApiError> {
    let month = ai_usage::month(&db.pool, user_id, &period_of(now)).await?;
    let used = month.spent.saturating_add(month.reserved);
    let budget = ai_budget_microcents(plan);
    if used < budget {
        return Ok(());
    }
    // Reported in cents, the plan's unit, rounded up.
    let used_cents = used.saturating_add(999_999) / 1_000_000;
    check(plan, Limit::AiBudgetCentsPerMonth, used_cents, 1).map_err(ApiError::from)
}

/// The metering period of `now` (unix seconds): its UTC calendar month, `YYYY-MM`.
pub fn period_of(now: i64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let days = now.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        assert_eq!(Plan::from_name("growth"), Plan::Growth);
        assert_eq!(Plan::from_name("Scale"), Plan::Scale);
        assert_eq!(Plan::from_name("pro"), Plan::Free);
        assert_eq!(Limit::ActiveCampaigns.allowed(Plan::Scale), None);
        assert_eq!(Limit::ProspectsPerMonth.allowed(Plan::Starter), Some(100));
        assert_eq!(
            Limit::AiBudgetCentsPerMonth.allowed(Plan::Growth),
            Some(5000)
        );
    }

    #[test]
    fn checks() {
        assert!(check(Plan::Free, Limit::ActiveCampaigns, 0, 1).is_ok());
        let refused = check(Plan::Free, Limit::ActiveCampaigns, 1, 1).unwrap_err();
        assert_eq!((refused.usage, refused.allowed), (1, 1));
        assert!(check(Plan::Scale, Limit::ActiveCampaigns, 10_000, 1).is_ok());
        assert!(check(Plan::Free, Limit::ProspectsPerMonth, 20, 5).is_ok());
        assert!(check(Plan::Free, Limit::ProspectsPerMonth, 20, 6).is_err());
    }

    #[test]
    fn periods_are_utc_months() {
        assert_eq!(period_of(0), "1970-01");
        assert_eq!(period_of(951_782_400), "2000-02"); // 2000-02-29T00:00:00Z
        assert_eq!(period_of(1_798_761_599), "2026-12"); // 2026-12-31T23:59:59Z
        assert_eq!(period_of(1_798_761_600), "2027-01");
    }
}
