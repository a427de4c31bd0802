//! The queue worker: each tick (on the job engine's schedule, every
//! `SENDING_TICK_MS`, in every process: see [`super::periodic`])
//!
//! 1. moves `sending` rows whose lease passed (a worker died mid-call) to
//!    `unknown`, then resolves `unknown` rows the provider can look up
//!    (`sent_mail`: `sent` if written, queued again if not; Mailgun: they stay
//!    `unknown`, shown to the user — never resent blindly);
//! 2. queues approved follow-ups whose delay has passed;
//! 3. for each active, unarchived campaign with a verified sender and a due
//!    row, claims at most one row under a lease (see [`crate::db::sending`]:
//!    the campaign's row is locked while its sends since the local midnight
//!    are counted, so concurrent ticks in any number of processes neither send
//!    a row twice nor pass the daily limit), when its [`Schedule`] allows —
//!    inside the window, under the daily limit, a spacing after its last send
//!    so that a day's sends spread over the window;
//! 4. sends the claimed row — `sending` in the database before the provider
//!    is called — unless its address was suppressed or its email is no longer
//!    approved (an answer to a reply: no longer `sending`), threaded under the
//!    reply when it answers one, and records the outcome (settling the
//!    answer's draft in the same transaction): `sent`; queued again after a backoff
//!    when the failure proves the provider did not take it (at most
//!    [`MAX_ATTEMPTS`] claims); `failed` with the reason; or `unknown`.
//!
//! The tick runs on an apalis-cron schedule of the job engine
//! ([`super::periodic`]); every row is claimed under its own lease here, so
//! several processes ticking at once is safe by construction (tested with
//! two processes on one PostgreSQL). Tests call [`Worker::tick`] directly on
//! the manual clock.

use std::{sync::Arc, time::Duration};

use steadfast::retry::{Backoff, Jitter};

use super::{
    config::SendingConfig,
    provider::{Lookup, MailgunConfig, OutgoingMessage, Provider, SendError},
    schedule::Schedule,
    unsubscribe,
};
use crate::{
    analytics::{self, Event, EventKind},
    background::Background,
    clock::Clock,
    db::{
        Db,
        sending::{self, Claim, Outcome, Outgoing},
        sequences, suppressions,
    },
    http_client,
    state::AppState,
};

/// Claims of one row at most (the first send and its retries).
pub const MAX_ATTEMPTS: i64 = 5;

/// The delay before a row refused by the provider is tried again:
/// 1, 2, 4… minutes, at most an hour.
pub fn resend_backoff() -> Backoff {
    Backoff::new(
        Duration::from_secs(60),
        2.0,
        Duration::from_secs(3600),
        Jitter::None,
    )
}

/// A sending worker; cheap to clone.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    clock: Arc<dyn Clock>,
    provider: Provider,
    config: SendingConfig,
    public_url: String,
    owner: String,
    /// Where analytics events are written, off the send path.
    background: Background,
}

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Rows that were `sending` past their lease, now `unknown`.
    pub expired: usize,
    /// `unknown` rows resolved by a provider lookup.
    pub resolved: usize,
    /// Follow-ups queued.
    pub follow_ups_queued: u64,
    /// Rows the provider accepted.
    pub sent: usize,
    /// Rows that did not go out (cancelled, failed, queued again, unknown).
    pub not_sent: usize,
}

impl Worker {
    /// A worker with `state`'s database, clock and configured provider.
    pub fn new(state: &AppState) -> Self {
        let config = state.config.sending.clone();
        let provider = match &config.mailgun {
            Some(mailgun) => Self::mailgun(mailgun.clone(), state),
            None => Provider::SentMail(state.db.clone()),
        };
        Self::with_provider(state, provider)
    }

    fn mailgun(config: MailgunConfig, state: &AppState) -> Provider {
        Provider::Mailgun(Box::new((
            config,
            http_client::retrying_client(state.config.mail_circuit),
        )))
    }

    /// A worker sending through `provider`.
    pub fn with_provider(state: &AppState, provider: Provider) -> Self {
        Self {
            inner: Arc::new(Inner {
                db: state.db.clone(),
                clock: state.config.clock.clone(),
                provider,
                config: state.config.sending.clone(),
                public_url: state.config.public_url.clone(),
                owner: format!("sender-{}", uuid::Uuid::new_v4()),
                background: state.background.clone(),
            }),
        }
    }

    /// This worker's lease owner id.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// The provider's name, for logs.
    pub(super) fn provider_name(&self) -> &'static str {
        self.inner.provider.name()
    }

    /// One tick (see the module docs).
    pub async fn tick(&self) -> TickReport {
        let mut report = TickReport::default();
        let inner = &self.inner;
        let pool = &inner.db.pool;
        let now = inner.clock.now();
        match sending::expire_leases(pool, now).await {
            Ok(orphans) => {
                for orphan in &orphans {
                    tracing::warn!(queue_id = orphan.id, message_id = ?orphan.message_id, "send interrupted: the row is unknown, not resent");
                }
                report.expired = orphans.len();
            }
            Err(e) => tracing::error!(error = %e, "expiring send leases failed"),
        }
        report.resolved = self.resolve_unknown(now).await;
        match sequences::queue_due_follow_ups(pool, now, inner.config.batch).await {
            Ok(n) => report.follow_ups_queued = n,
            Err(e) => tracing::error!(error = %e, "queueing follow-ups failed"),
        }
        let campaigns = match sending::sendable(pool, now, inner.config.batch).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "listing campaigns to send failed");
                return report;
            }
        };
        for campaign in campaigns {
            let ctx = campaign.context;
            let Ok(schedule) = Schedule::new(
                &ctx.timezone,
                ctx.window_start,
                ctx.window_end,
                ctx.daily_limit,
            ) else {
                tracing::error!(
                    campaign_id = ctx.campaign_id,
                    timezone = ctx.timezone,
                    "unknown time zone"
                );
                continue;
            };
            let now = inner.clock.now();
            let lease_until = now + i64::try_from(inner.config.lease.as_secs()).unwrap_or(120);
            let claim = sending::claim(
                &inner.db,
                &ctx.campaign_id,
                &inner.owner,
                now,
                lease_until,
                schedule.day_start(now),
                |today, last| schedule.next_send(now, today, last) <= now,
            )
            .await;
            match claim {
                Ok(Claim::Claimed(id)) => {
                    if self.deliver(&id, ctx.auto_approve_followups).await {
                        report.sent += 1;
                    } else {
                        report.not_sent += 1;
                    }
                }
                Ok(Claim::Busy | Claim::NotNow) => {}
                Err(e) => {
                    tracing::error!(campaign_id = ctx.campaign_id, error = %e, "claiming a row failed")
                }
            }
        }
        report
    }

    async fn finish(&self, id: &str, outcome: Outcome<'_>) {
        let inner = &self.inner;
        let now = inner.clock.now();
        match sending::finish(&inner.db.pool, id, &inner.owner, outcome, now).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                queue_id = id,
                "send lease lost before its outcome was recorded"
            ),
            Err(e) => {
                tracing::error!(queue_id = id, error = %e, "send outcome not recorded; the row becomes unknown after its lease")
            }
        }
    }

    async fn resolve_unknown(&self, now: i64) -> usize {
        let inner = &self.inner;
        if matches!(inner.provider, Provider::Mailgun(..)) {
            return 0;
        }
        let rows = match sending::unknown(&inner.db.pool, inner.config.batch).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "reading unknown rows failed");
                return 0;
            }
        };
        let mut resolved = 0;
        for row in rows {
            let delivered = match inner.provider.lookup(&row.id).await {
                Lookup::Delivered => true,
                Lookup::NeverReceived => false,
                Lookup::Unsupported => continue,
            };
            match sending::resolve_unknown(&inner.db.pool, &row.id, delivered, now).await {
                Ok(true) => {
                    tracing::info!(
                        queue_id = row.id,
                        delivered,
                        "unknown send resolved by a provider lookup"
                    );
                    resolved += 1;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(queue_id = row.id, error = %e, "resolving an unknown row failed")
                }
            }
        }
        resolved
    }

    /// Sends claimed row `id`; whether the provider accepted it.
    async fn deliver(&self, id: &str, auto_approve: bool) -> bool {
        let inner = &self.inner;
        let pool = &inner.db.pool;
        let row = match sending::outgoing(pool, id).await {
            Ok(Some(row)) => row,
            Ok(None) => return false, // deleted with its campaign
            Err(e) => {
                tracing::error!(queue_id = id, error = %e, "reading a claimed row failed");
                self.finish(
                    id,
                    Outcome::Retry {
                        error: "database error",
                        at: inner.clock.now(),
                    },
                )
                .await;
                return false;
            }
        };
        if row.email_status != row.sendable_status() {
            let reason = if row.thread.is_some() {
                "the answer is no longer being sent"
            } else {
                "the email is no longer approved"
            };
            self.finish(id, Outcome::Cancelled(reason)).await;
            return false;
        }
        match suppressions::reason(pool, &row.user_id, &row.to).await {
            Ok(Some(reason)) => {
                self.finish(id, Outcome::Cancelled(&format!("suppressed: {reason}")))
                    .await;
                return false;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(queue_id = id, error = %e, "suppression check failed");
                self.finish(
                    id,
                    Outcome::Retry {
                        error: "database error",
                        at: inner.clock.now(),
                    },
                )
                .await;
                return false;
            }
        }
        let message = match self.message(&row).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(queue_id = id, error = %e, "building a message failed");
                self.finish(
                    id,
                    Outcome::Retry {
                        error: "database error",
                        at: inner.clock.now(),
                    },
                )
                .await;
                return false;
            }
        };
        let now = inner.clock.now();
        match inner.provider.send(&message, now).await {
            Ok(provider_id) => {
                self.finish(id, Outcome::Sent(provider_id.as_deref())).await;
                analytics::record_with(
                    &inner.background,
                    &inner.db,
                    &inner.clock,
                    Event::new(&row.user_id, EventKind::EmailSent)
                        .campaign(&row.campaign_id)
                        .prospect(&row.prospect_id)
                        .with("follow_up", row.is_follow_up)
                        .with("answer", row.thread.is_some()),
                );
                if let Err(e) = sending::mark_email_sent(pool, id, inner.clock.now()).await {
                    tracing::error!(queue_id = id, error = %e, "email not marked sent");
                }
                // An answer to a reply starts no sequence.
                if !row.is_follow_up
                    && row.thread.is_none()
                    && let Err(e) =
                        sequences::draft_follow_ups(pool, &row.prospect_id, auto_approve, now).await
                {
                    tracing::error!(queue_id = id, error = %e, "drafting follow-ups failed");
                }
                true
            }
            Err(SendError::NotAccepted(reason)) if row.attempts < MAX_ATTEMPTS => {
                let delay = resend_backoff().exponential(row.attempts as u32);
                let at = now + i64::try_from(delay.as_secs()).unwrap_or(3600);
                tracing::warn!(queue_id = id, reason, at, "send refused; tried again later");
                self.finish(id, Outcome::Retry { error: &reason, at }).await;
                false
            }
            Err(SendError::NotAccepted(reason) | SendError::Rejected(reason)) => {
                tracing::warn!(queue_id = id, reason, "send failed for good");
                self.finish(id, Outcome::Failed(&reason)).await;
                false
            }
            Err(SendError::Unknown(reason)) => {
                tracing::error!(queue_id = id, reason, "send outcome unknown; not resent");
                self.finish(id, Outcome::Unknown(&reason)).await;
                false
            }
        }
    }

    async fn message(&self, row: &Outgoing) -> Result<OutgoingMessage, sqlx::Error> {
        let inner = &self.inner;
        let secret = unsubscribe::secret(&inner.db, inner.clock.now()).await?;
        let token = unsubscribe::sign(&secret, &row.user_id, &row.to);
        let unsubscribe_url = format!("{}{}{token}", inner.public_url, unsubscribe::PATH_PREFIX);
        let text = format!("{}\n\n--\nUnsubscribe: {unsubscribe_url}\n", row.body);
        let html = format!(
            "<p>{}</p>\n<p style=\"font-size:small\"><a href=\"{}\">Unsubscribe</a></p>\n",
            escape_html(&row.body).replace('\n', "<br>\n"),
            escape_html(&unsubscribe_url)
        );
        Ok(OutgoingMessage {
            queue_id: row.id.clone(),
            user_id: row.user_id.clone(),
            from: format!("{} <{}>", quote_name(&row.from_name), row.from_email),
            to: row.to.clone(),
            reply_to: row.reply_to.clone(),
            subject: row.subject.clone(),
            text,
            html,
            message_id: row.message_id.clone(),
            unsubscribe_url,
            in_reply_to: row.thread.as_ref().and_then(|t| t.in_reply_to.clone()),
            references: row.thread.as_ref().and_then(|t| t.references.clone()),
        })
    }
}

/// A display name fit for `From:` (quoted when it has specials).
fn quote_name(name: &str) -> String {
    let clean: String = name.chars().filter(|c| !c.is_control()).collect();
    if clean
        .chars()
        .all(|c| c.is_alphanumeric() || c == ' ' || c == '-' || c == '.')
    {
        clean
    } else {
        format!("\"{}\"", clean.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
