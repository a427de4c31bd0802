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
    /// The action name (OWASP logging vocabulary, dotted) in logs and `audit_log.action`.
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
        }
    }

    fn outcome(self) -> &'static str {
        match self {
            Self::LoginFailure | Self::OAuthFailure => "failure",
            Self::RateLimited => "denied",
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
            action: event.action().to_owned(),
            outcome: event.outcome().to_owned(),
            actor: user_id.map(str::to_owned),
            client_ip: Some(meta.ip.to_string()),
            user_agent: meta.user_agent.clone(),
            request_id: meta.request_id.clone(),
            method: Some(meta.method.to_string()),
            route: Some(meta.route.clone()),
            target_type: email.map(|_| "email".to_owned()),
            target_id: email.map(str::to_lowercase),
            reason: detail.map(str::to_owned),
            extra: "{}".to_owned(),
            ..AuditRecord::default()
        };
        tracing::info!(
            target: "koldly::audit",
            action = record.action,
            outcome = record.outcome,
            actor = record.actor.as_deref().unwrap_or(""),
            target = record.target_id.as_deref().unwrap_or(""),
            client_ip = record.client_ip.as_deref().unwrap_or(""),
            request_id = record.request_id.as_deref().unwrap_or(""),
            reason = record.reason.as_deref().unwrap_or(""),
            "audit"
        );
        if let Err(err) = audit_log::insert_all(&self.db.pool, std::slice::from_ref(&record)).await
        {
            tracing::error!(target: "koldly::audit", error = %err, action = record.action, "audit record not stored");
        }
    }
}
