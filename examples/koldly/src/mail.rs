//! Outgoing mail: a Postmark-compatible HTTP provider when `POSTMARK_TOKEN` is
//! set, otherwise the `mail_outbox` table and a log line. Every message is
//! written to the outbox first, so none is lost; its row records whether the
//! provider took it (`sent`) or not (`failed`).
//!
//! [`Mailer::send`] delivers before returning (the caller reports a failure);
//! [`Mailer::send_later`] stores the message and delivers it in the background,
//! so a request takes the same time whether or not it sent mail (forgot-password
//! must not reveal which accounts exist). Background deliveries are tracked:
//! shutdown waits for them ([`Mailer::wait_idle`]).

use std::{sync::Arc, time::Duration};

use crate::{
    background::Background,
    clock::Clock,
    config::PostmarkConfig,
    db::{Db, outbox},
    http_client::{self, RetryingClient},
};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use steadfast::Deadline;

/// Sends mail; cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    from: String,
    provider: Option<(PostmarkConfig, RetryingClient)>,
    clock: Arc<dyn Clock>,
    background: Background,
}

/// One message.
#[derive(Debug, Clone)]
pub struct Message {
    /// Recipient.
    pub to: String,
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// `password_reset`, `email_verification`...
    pub kind: &'static str,
}

/// Why a message was not delivered (it stays in the outbox as `failed`).
#[derive(Debug)]
pub struct MailError {
    /// What happened.
    pub message: String,
    /// Whether the failure proved the provider did not take the message, so
    /// that sending it again cannot deliver it twice.
    pub resend_safe: bool,
}

impl MailError {
    fn new(message: String, resend_safe: bool) -> Self {
        Self {
            message,
            resend_safe,
        }
    }
}

impl std::fmt::Display for MailError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// How many delivery attempts a message gets in all, the outbox job's included.
pub const MAX_ATTEMPTS: i64 = 5;

/// How many messages one run of the outbox job resends at most.
const RESEND_BATCH: i64 = 50;

/// How long a message may stay `pending` before the outbox job takes it for
/// cut off (its request ended by its route timeout, or the process stopped,
/// before the send was marked) and sends it again. It must exceed the longest
/// a live send can take, so that a send in progress is never duplicated: the
/// send's own backstop is 30 s (in `post`; the client's retries stop at 25 s,
/// 10 s an attempt), so 60 s.
pub const STALE_PENDING_AFTER: Duration = Duration::from_secs(60);

impl Mailer {
    /// A mailer; `provider` `None` keeps mail in the outbox. Background
    /// deliveries run on `background`.
    pub fn new(
        db: Db,
        from: String,
        provider: Option<(PostmarkConfig, RetryingClient)>,
        clock: Arc<dyn Clock>,
        background: Background,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                from,
                provider,
                clock,
                background,
            }),
        }
    }

    /// Stores the message in the outbox, then delivers it through the provider
    /// when one is configured; retries stop at `deadline` (the request's).
    pub async fn send(&self, msg: Message, deadline: Option<Deadline>) -> Result<(), MailError> {
        let id = self.store(&msg).await?;
        self.deliver(id, &msg, deadline).await
    }

    /// Stores the message in the outbox now and delivers it in the background.
    pub async fn send_later(&self, msg: Message) -> Result<(), MailError> {
        let id = self.store(&msg).await?;
        if self.inner.provider.is_none() {
            return Ok(());
        }
        let mailer = self.clone();
        self.inner.background.spawn(async move {
            let _ = mailer.deliver(id, &msg, None).await;
        });
        Ok(())
    }

    /// The status a message is stored with before delivery: `pending` with a
    /// provider, `logged` without (it stays in the outbox).
    pub fn outbox_status(&self) -> &'static str {
        if self.inner.provider.is_some() {
            "pending"
        } else {
            "logged"
        }
    }

    /// Delivers in the background a message the caller stored itself (with
    /// [`outbox_status`](Self::outbox_status), in the transaction of the
    /// change it reports) under `id`.
    pub fn deliver_stored_later(&self, id: String, msg: Message) {
        if self.inner.provider.is_none() {
            return;
        }
        let mailer = self.clone();
        self.inner.background.spawn(async move {
            let _ = mailer.deliver(id, &msg, None).await;
        });
    }

    /// The outbox job's one run: sends again each failed message whose failure
    /// proved the provider did not take it (see [`MailError::resend_safe`]),
    /// and each message left `pending` longer than [`STALE_PENDING_AFTER`]
    /// (its sender was cut off, so nothing else would ever send or report
    /// it), each claimed first by one atomic update so that of several
    /// instances exactly one resends it per attempt. Every attempt carries the
    /// message's outbox id as its `Idempotency-Key`. Returns how many were
    /// delivered.
    pub async fn resend_failed(&self) -> usize {
        if self.inner.provider.is_none() {
            return 0;
        }
        self.resend_stale_pending().await + self.resend_refused().await
    }

    /// Sends again the messages whose sender was cut off (see
    /// [`resend_failed`](Self::resend_failed)).
    async fn resend_stale_pending(&self) -> usize {
        let pool = &self.inner.db.pool;
        let now = self.inner.clock.now();
        let before = now - STALE_PENDING_AFTER.as_secs() as i64;
        let stale = match outbox::stale_pending(pool, before, MAX_ATTEMPTS, RESEND_BATCH).await {
            Ok(stale) => stale,
            Err(err) => {
                tracing::error!(error = %err, "outbox job: stale pending messages not read");
                return 0;
            }
        };
        let mut delivered = 0;
        for row in stale {
            match outbox::claim_stale(pool, &row.id, row.attempts, before, now).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(err) => {
                    tracing::error!(outbox_id = row.id, error = %err, "outbox job: claim failed");
                    continue;
                }
            }
            tracing::warn!(
                outbox_id = row.id,
                kind = row.kind,
                "outbox job: message left pending by a cut-off send, sending it again"
            );
            let msg = message_of(&row);
            if self.deliver(row.id, &msg, None).await.is_ok() {
                delivered += 1;
            }
        }
        delivered
    }

    /// Sends again the failed messages the provider proved it did not take.
    async fn resend_refused(&self) -> usize {
        let pool = &self.inner.db.pool;
        let due = match outbox::resendable(pool, MAX_ATTEMPTS, RESEND_BATCH).await {
            Ok(due) => due,
            Err(err) => {
                tracing::error!(error = %err, "outbox job: failed messages not read");
                return 0;
            }
        };
        let mut delivered = 0;
        for row in due {
            match outbox::claim(pool, &row.id, row.attempts, self.inner.clock.now()).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(err) => {
                    tracing::error!(outbox_id = row.id, error = %err, "outbox job: claim failed");
                    continue;
                }
            }
            let msg = message_of(&row);
            if self.deliver(row.id, &msg, None).await.is_ok() {
                delivered += 1;
            }
        }
        delivered
    }

    /// Waits (at most `limit`) until no background work — deliveries, and
    /// whatever else runs on the same [`Background`] — is running; returns
    /// whether none is.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        self.inner.background.wait_idle(limit).await
    }

    async fn store(&self, msg: &Message) -> Result<String, MailError> {
        let status = if self.inner.provider.is_some() {
            "pending"
        } else {
            "logged"
        };
        let id = outbox::insert(
            &self.inner.db.pool,
            &msg.to,
            &msg.subject,
            &msg.body,
            msg.kind,
            status,
            self.inner.clock.now(),
        )
        .await
        .map_err(|e| MailError::new(format!("outbox write failed: {e}"), false))?;
        if self.inner.provider.is_none() {
            tracing::info!(
                to = msg.to,
                subject = msg.subject,
                kind = msg.kind,
                outbox_id = id,
                "mail kept in the outbox (no provider configured)"
            );
        }
        Ok(id)
    }

    async fn deliver(
        &self,
        id: String,
        msg: &Message,
        deadline: Option<Deadline>,
    ) -> Result<(), MailError> {
        let Some((postmark, client)) = &self.inner.provider else {
            return Ok(());
        };
        let result = post(client, postmark, &self.inner.from, &id, msg, deadline).await;
        let now = self.inner.clock.now();
        let pool = &self.inner.db.pool;
        match &result {
            Ok(()) => {
                tracing::info!(to = msg.to, kind = msg.kind, outbox_id = id, "mail sent");
                if let Err(e) = outbox::mark(pool, &id, "sent", None, false, now).await {
                    tracing::error!(outbox_id = id, error = %e, "mail sent but not marked in the outbox");
                }
            }
            Err(err) => {
                tracing::error!(
                    to = msg.to,
                    kind = msg.kind,
                    outbox_id = id,
                    error = %err,
                    resend = err.resend_safe,
                    "mail delivery failed"
                );
                if let Err(e) = outbox::mark(
                    pool,
                    &id,
                    "failed",
                    Some(&err.message),
                    err.resend_safe,
                    now,
                )
                .await
                {
                    tracing::error!(outbox_id = id, error = %e, "mail failure not marked in the outbox");
                }
            }
        }
        result
    }
}

/// A stored message as the provider call takes it.
fn message_of(row: &outbox::OutboxMessage) -> Message {
    Message {
        to: row.to_addr.clone(),
        subject: row.subject.clone(),
        body: row.body_text.clone(),
        // Messages carry their kind as a static name.
        kind: match row.kind.as_str() {
            "password_reset" => "password_reset",
            "email_verification" => "email_verification",
            _ => "other",
        },
    }
}

async fn post(
    client: &RetryingClient,
    postmark: &PostmarkConfig,
    from: &str,
    outbox_id: &str,
    msg: &Message,
    deadline: Option<Deadline>,
) -> Result<(), MailError> {
    let body = serde_json::json!({
        "From": from,
        "To": msg.to,
        "Subject": msg.subject,
        "TextBody": msg.body,
        "MessageStream": "outbound",
        "Tag": msg.kind,
    });
    let mut req = Request::post(format!("{}/email", postmark.url.trim_end_matches('/')))
        .header("accept", "application/json")
        .header("content-type", "application/json")
        .header("x-postmark-server-token", &postmark.token)
        .header("idempotency-key", outbox_id)
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| MailError::new(format!("bad provider request: {e}"), false))?;
    if let Some(deadline) = deadline {
        deadline.insert_into(req.extensions_mut());
    }
    // The retry layer bounds each attempt and the whole; this is a backstop.
    let (status, body) = http_client::fetch(client.clone(), req, Duration::from_secs(30))
        .await
        .map_err(|e| {
            let failure = steadfast::classify::classify_error(&*e);
            if http_client::is_circuit_open(&failure) {
                return MailError::new(
                    "mail provider failing, its circuit is open: not sent".to_owned(),
                    true,
                );
            }
            let refused = http_client::proves_not_accepted(&failure);
            let fate = if refused {
                "not taken"
            } else {
                "outcome unknown, not resent"
            };
            MailError::new(format!("provider unreachable ({fate}): {e}"), refused)
        })?;
    if status.is_success() {
        return Ok(());
    }
    let failure = steadfast::classify::Classification::new(
        steadfast::classify::classify_status(status).unwrap_or(steadfast::ErrorClass::Server),
    )
    .with_status(status);
    Err(MailError::new(
        format!(
            "provider answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ),
        http_client::proves_not_accepted(&failure),
    ))
}
