//! Audit: OWASP authentication events and the product's changes (campaigns,
//! prospects, ICP templates, onboarding, emails), recorded by steadfast's
//! [`AuditLayer`] on their routes, enriched by the handlers through the
//! [`AuditContext`], and written by the [`Auditor`]'s background writer to the
//! log (target `audit`) and the `audit_log` table ([`DbSink`]).

use std::time::UNIX_EPOCH;

use http::Method;
use steadfast::{
    BoxError,
    audit::{
        AuditContext, AuditEvent, AuditLayer, Auditor, AuditorBuilder, FullPolicy, Outcome, Sink,
        TracingSink, TrustedProxies,
    },
};

use crate::db::{
    Db,
    audit_log::{self, AuditRecord},
};

/// The audited routes and the action each records unless its handler says
/// more precisely what happened.
pub const AUDITED_ROUTES: &[(Method, &str, &str)] = &[
    (Method::POST, "/api/auth/signup", "authn.signup"),
    (Method::POST, "/api/auth/login", "authn.login"),
    (
        Method::POST,
        "/api/auth/forgot-password",
        "authn.password.reset.request",
    ),
    (
        Method::POST,
        "/api/auth/reset-password",
        "authn.password.change",
    ),
    (
        Method::POST,
        "/api/auth/send-verification",
        "authn.email.verification.request",
    ),
    (
        Method::POST,
        "/api/auth/verify-email",
        "authn.email.verified",
    ),
    (Method::POST, "/api/auth/logout-all", "authn.logout.all"),
    (Method::GET, "/auth/google/callback", "authn.oauth.login"),
];

/// The product's audited changes (campaigns, prospects, ICP templates,
/// onboarding, email generation and decisions) and their actions; handlers
/// set the actor and the target with [`note_change`].
pub const PRODUCT_ROUTES: &[(Method, &str, &str)] = &[
    (Method::POST, "/api/campaigns", "campaign.create"),
    (Method::PATCH, "/api/campaigns/{id}", "campaign.update"),
    (Method::DELETE, "/api/campaigns/{id}", "campaign.delete"),
    (
        Method::POST,
        "/api/campaigns/{id}/duplicate",
        "campaign.duplicate",
    ),
    (
        Method::PUT,
        "/api/campaigns/{id}/archive",
        "campaign.archive",
    ),
    (
        Method::PUT,
        "/api/campaigns/{id}/unarchive",
        "campaign.unarchive",
    ),
    (
        Method::POST,
        "/api/campaigns/{id}/prospects",
        "prospects.import",
    ),
    (Method::DELETE, "/api/prospects/{id}", "prospect.delete"),
    (Method::POST, "/api/icp-templates", "icp_template.create"),
    (
        Method::PATCH,
        "/api/icp-templates/{id}",
        "icp_template.update",
    ),
    (
        Method::DELETE,
        "/api/icp-templates/{id}",
        "icp_template.delete",
    ),
    (Method::POST, "/api/onboarding", "onboarding.submit"),
    (
        Method::POST,
        "/api/campaigns/{id}/emails/generate",
        "emails.generate",
    ),
    (
        Method::POST,
        "/api/emails/{id}/regenerate",
        "email.regenerate",
    ),
    (Method::POST, "/api/emails/{id}/approve", "email.approve"),
    (Method::PATCH, "/api/emails/{id}", "email.edit"),
    (Method::POST, "/api/emails/{id}/reject", "email.reject"),
    (Method::POST, "/api/emails/approve", "emails.approve"),
    (
        Method::PATCH,
        "/api/inbox/replies/{id}",
        "inbox.reply.update",
    ),
    (
        Method::POST,
        "/api/inbox/replies/{id}/categorize",
        "inbox.reply.categorize",
    ),
    (
        Method::POST,
        "/api/inbox/replies/{id}/draft",
        "inbox.reply.draft",
    ),
    (
        Method::POST,
        "/api/inbox/replies/{id}/send",
        "inbox.reply.send",
    ),
    (Method::POST, "/api/billing/checkout", "billing.checkout"),
    (Method::POST, "/api/webhooks/stripe", "billing.webhook"),
    (Method::GET, "/api/admin/metrics", "admin.metrics.read"),
];

/// Says on the request's audit event who acted (`actor`, a user id) on what
/// (`kind`, `id`). The outcome follows the response status; `reason` says
/// why a change was refused.
pub fn note_change(
    audit: &Option<AuditContext>,
    actor: &str,
    kind: &'static str,
    id: &str,
    reason: Option<&str>,
) {
    let Some(audit) = audit else { return };
    audit.set_actor(actor);
    audit.set_target(kind, id);
    if let Some(reason) = reason {
        audit.set_reason(reason);
    }
}

/// The audit layer for koldly's routes; the client IP is resolved through
/// `proxies` (the same `TRUSTED_PROXIES` as the rate limits).
pub fn layer(auditor: Auditor, proxies: TrustedProxies) -> AuditLayer {
    AUDITED_ROUTES
        .iter()
        .chain(PRODUCT_ROUTES)
        .chain(crate::sending::AUDITED_ROUTES)
        .fold(
            AuditLayer::new(auditor),
            |layer, (method, route, action)| layer.route(method.clone(), route, *action),
        )
        .trusted_proxies(proxies)
}

/// The auditor: a bounded queue and a background writer to [`DbSink`],
/// configured by [`builder`].
pub fn auditor(db: Db) -> Auditor {
    builder().build(DbSink::new(db))
}

/// koldly's audit configuration: steadfast's defaults (a 4096-event queue, an
/// eighth of it reserved for security events, `Wait(5ms)` for the others),
/// except that authentication and authorisation events are never dropped
/// while the server runs. When the queue is full to its last slot, a request
/// whose security event does not fit waits for room
/// ([`FullPolicy::UNTIL_ROOM`]) instead of losing it; and a batch the
/// database refused on every attempt keeps its security events to write
/// again. The others are shed first, as the library does by default.
pub fn builder() -> AuditorBuilder {
    Auditor::builder()
        .when_full_security(FullPolicy::UNTIL_ROOM)
        .keep_failed_security_events(true)
}

/// Writes each event to the log, then to `audit_log` (one transaction per batch).
pub struct DbSink {
    db: Db,
    log: TracingSink,
}

impl DbSink {
    /// A sink writing to `db`.
    pub fn new(db: Db) -> Self {
        Self {
            db,
            log: TracingSink::new(),
        }
    }
}

impl Sink for DbSink {
    async fn write(&mut self, events: &[AuditEvent]) -> Result<(), BoxError> {
        // The log first: if the database keeps failing, the log still has it.
        self.log.write(events).await?;
        let records: Vec<AuditRecord> = events.iter().map(record_of).collect();
        audit_log::insert_all(&self.db.pool, &records).await?;
        Ok(())
    }
}

/// One `audit_log` row for an event.
pub fn record_of(event: &AuditEvent) -> AuditRecord {
    AuditRecord {
        occurred_at: event
            .time
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
        action: event.action.to_string(),
        outcome: event.outcome.as_str().to_owned(),
        actor: event.actor.clone(),
        client_ip: event.client_ip.map(|ip| ip.to_string()),
        user_agent: event.user_agent.clone(),
        request_id: event.request_id.clone(),
        method: event.method.as_ref().map(|m| m.to_string()),
        route: event.route.clone(),
        status: event.status.map(|s| i64::from(s.as_u16())),
        latency_ms: event.latency.map(|l| l.as_secs_f64() * 1000.0),
        target_type: event.target.as_ref().map(|t| t.kind.to_string()),
        target_id: event.target.as_ref().map(|t| t.id.clone()),
        reason: event.reason.clone(),
        extra: serde_json::Value::Object(event.extra.clone()).to_string(),
    }
}

/// The authentication events koldly records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthEvent {
    /// A new account.
    Signup,
    /// A password login succeeded.
    LoginSuccess,
    /// A password login failed.
    LoginFailure,
    /// A login or forgot-password request was refused by the rate limit.
    RateLimited,
    /// A reset link was asked for.
    PasswordResetRequested,
    /// A password was reset with a token.
    PasswordResetCompleted,
    /// A verification mail was sent.
    VerificationSent,
    /// An address was verified.
    EmailVerified,
    /// Sign-in through Google succeeded.
    OAuthLogin,
    /// Sign-in through Google failed.
    OAuthFailure,
    /// Every session of an account was ended on its owner's request.
    LogoutAll,
}

impl AuthEvent {
    /// The action name (OWASP logging vocabulary, dotted).
    pub fn action(self) -> &'static str {
        match self {
            Self::Signup => "authn.signup",
            Self::LoginSuccess => "authn.login.success",
            Self::LoginFailure => "authn.login.fail",
            Self::RateLimited => "authn.throttled",
            Self::PasswordResetRequested => "authn.password.reset.request",
            Self::PasswordResetCompleted => "authn.password.change",
            Self::VerificationSent => "authn.email.verification.request",
            Self::EmailVerified => "authn.email.verified",
            Self::OAuthLogin => "authn.oauth.login.success",
            Self::OAuthFailure => "authn.oauth.login.fail",
            Self::LogoutAll => "authn.logout.all",
        }
    }

    fn outcome(self) -> Outcome {
        match self {
            Self::LoginFailure | Self::OAuthFailure => Outcome::Failure,
            Self::RateLimited => Outcome::Denied,
            _ => Outcome::Success,
        }
    }
}

/// Says on the request's audit event what happened: the action, the outcome,
/// the actor (the authenticated user), the account acted upon (`user` id, or
/// the `email` a request named when no account matched) and why. Never a
/// password or token.
pub fn note(
    audit: &Option<AuditContext>,
    event: AuthEvent,
    user_id: Option<&str>,
    email: Option<&str>,
    reason: Option<&str>,
) {
    let Some(audit) = audit else { return };
    audit.set_action(event.action());
    audit.set_outcome(event.outcome());
    let authenticated = !matches!(
        event,
        AuthEvent::LoginFailure
            | AuthEvent::RateLimited
            | AuthEvent::OAuthFailure
            | AuthEvent::PasswordResetRequested
    );
    match (user_id, email) {
        (Some(id), _) => {
            if authenticated {
                audit.set_actor(id);
            }
            audit.set_target("user", id);
        }
        (None, Some(email)) => audit.set_target("email", email.to_lowercase()),
        (None, None) => {}
    }
    if let Some(email) = email {
        audit.insert_extra("email", email.to_lowercase());
    }
    if let Some(reason) = reason {
        audit.set_reason(reason);
    }
}
