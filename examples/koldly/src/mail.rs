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

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use steadfast::Deadline;
use tokio::sync::Notify;

use crate::{
    clock::Clock,
    config::PostmarkConfig,
    db::{Db, outbox},
    http_client::{self, RetryingClient},
};

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
    in_flight: AtomicUsize,
    idle: Notify,
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
pub struct MailError(pub String);

impl std::fmt::Display for MailError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Mailer {
    /// A mailer; `provider` `None` keeps mail in the outbox.
    pub fn new(
        db: Db,
        from: String,
        provider: Option<(PostmarkConfig, RetryingClient)>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                from,
                provider,
                clock,
                in_flight: AtomicUsize::new(0),
                idle: Notify::new(),
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
        self.inner.in_flight.fetch_add(1, Ordering::SeqCst);
        let mailer = self.clone();
        tokio::spawn(async move {
            let _ = mailer.deliver(id, &msg, None).await;
            if mailer.inner.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
                mailer.inner.idle.notify_waiters();
            }
        });
        Ok(())
    }

    /// Waits (at most `limit`) until no background delivery is running; returns
    /// whether none is.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let idle = self.inner.idle.notified();
                if self.inner.in_flight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
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
        .map_err(|e| MailError(format!("outbox write failed: {e}")))?;
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
                if let Err(e) = outbox::mark(pool, &id, "sent", None, now).await {
                    tracing::error!(outbox_id = id, error = %e, "mail sent but not marked in the outbox");
                }
            }
            Err(err) => {
                tracing::error!(to = msg.to, kind = msg.kind, outbox_id = id, error = %err, "mail delivery failed");
                if let Err(e) = outbox::mark(pool, &id, "failed", Some(&err.0), now).await {
                    tracing::error!(outbox_id = id, error = %e, "mail failure not marked in the outbox");
                }
            }
        }
        result
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
        .map_err(|e| MailError(format!("bad provider request: {e}")))?;
    if let Some(deadline) = deadline {
        deadline.insert_into(req.extensions_mut());
    }
    // The retry layer bounds each attempt and the whole; this is a backstop.
    let (status, body) = http_client::fetch(client.clone(), req, Duration::from_secs(30))
        .await
        .map_err(|e| MailError(format!("provider unreachable: {e}")))?;
    if status.is_success() {
        Ok(())
    } else {
        Err(MailError(format!(
            "provider answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )))
    }
}
