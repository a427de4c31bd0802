//! OWASP authentication events: each one goes to the log (target
//! `koldly::audit`) and to the `audit_log` table.

use crate::{
    db::{
        Db,
        audit_log::{self, AuditRecord},
    },
    request_meta::RequestMeta,
};

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
}

impl AuthEvent {
    /// The event name in logs and `audit_log.event`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Signup => "auth.signup",
            Self::LoginSuccess => "auth.login.success",
            Self::LoginFailure => "auth.login.failure",
            Self::RateLimited => "auth.rate_limited",
            Self::PasswordResetRequested => "auth.password_reset.requested",
            Self::PasswordResetCompleted => "auth.password_reset.completed",
            Self::VerificationSent => "auth.email_verification.sent",
            Self::EmailVerified => "auth.email_verification.completed",
            Self::OAuthLogin => "auth.oauth.login",
            Self::OAuthFailure => "auth.oauth.failure",
        }
    }

    fn outcome(self) -> &'static str {
        match self {
            Self::LoginFailure | Self::RateLimited | Self::OAuthFailure => "failure",
            _ => "success",
        }
    }
}

/// Writes authentication events.
#[derive(Debug, Clone)]
pub struct AuthAudit {
    db: Db,
}

impl AuthAudit {
    /// Events go to `db`'s `audit_log`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Records one event; a failed write is logged as an error with the event,
    /// so the record survives in the log at least.
    pub async fn record(
        &self,
        event: AuthEvent,
        now: i64,
        meta: &RequestMeta,
        user_id: Option<&str>,
        email: Option<&str>,
        detail: Option<&str>,
    ) {
        let record = AuditRecord {
            occurred_at: now,
            event: event.name().to_owned(),
            outcome: event.outcome().to_owned(),
            user_id: user_id.map(str::to_owned),
            email: email.map(str::to_lowercase),
            client_ip: Some(meta.ip.to_string()),
            request_id: meta.request_id.clone(),
            detail: detail.map(str::to_owned),
        };
        tracing::info!(
            target: "koldly::audit",
            event = record.event,
            outcome = record.outcome,
            user_id = record.user_id.as_deref().unwrap_or(""),
            email = record.email.as_deref().unwrap_or(""),
            client_ip = record.client_ip.as_deref().unwrap_or(""),
            request_id = record.request_id.as_deref().unwrap_or(""),
            detail = record.detail.as_deref().unwrap_or(""),
            "audit"
        );
        if let Err(err) = audit_log::insert(&self.db.pool, &record).await {
            tracing::error!(target: "koldly::audit", error = %err, event = record.event, "audit record not stored");
        }
    }
}
