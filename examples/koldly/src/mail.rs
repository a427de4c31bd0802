//! Outgoing mail: a Postmark-compatible HTTP provider when `POSTMARK_TOKEN` is
//! set, otherwise the `mail_outbox` table and a log line. Every message is
//! written to the outbox first, so none is lost.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::{
    clock::Clock,
    config::PostmarkConfig,
    db::{Db, outbox},
    http_client::{self, HttpClient},
};

/// Sends mail.
#[derive(Clone)]
pub struct Mailer {
    db: Db,
    from: String,
    provider: Option<(PostmarkConfig, HttpClient)>,
    clock: Arc<dyn Clock>,
}

/// One message.
#[derive(Debug)]
pub struct Message<'a> {
    /// Recipient.
    pub to: &'a str,
    /// Subject.
    pub subject: &'a str,
    /// Plain-text body.
    pub body: &'a str,
    /// `password_reset`, `email_verification`...
    pub kind: &'a str,
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
        provider: Option<(PostmarkConfig, HttpClient)>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            db,
            from,
            provider,
            clock,
        }
    }

    /// Stores the message in the outbox, then delivers it through the provider
    /// when one is configured.
    pub async fn send(&self, msg: Message<'_>) -> Result<(), MailError> {
        let now = self.clock.now();
        let status = if self.provider.is_some() {
            "pending"
        } else {
            "logged"
        };
        let id = outbox::insert(
            &self.db.pool,
            msg.to,
            msg.subject,
            msg.body,
            msg.kind,
            status,
            now,
        )
        .await
        .map_err(|e| MailError(format!("outbox write failed: {e}")))?;
        let Some((postmark, client)) = &self.provider else {
            tracing::info!(
                to = msg.to,
                subject = msg.subject,
                kind = msg.kind,
                outbox_id = id,
                "mail kept in the outbox (no provider configured)"
            );
            return Ok(());
        };
        let result = deliver(client, postmark, &self.from, &msg).await;
        let now = self.clock.now();
        match &result {
            Ok(()) => {
                tracing::info!(to = msg.to, kind = msg.kind, outbox_id = id, "mail sent");
                let _ = outbox::mark(&self.db.pool, &id, "sent", None, now).await;
            }
            Err(err) => {
                tracing::error!(to = msg.to, kind = msg.kind, outbox_id = id, error = %err, "mail delivery failed");
                let _ = outbox::mark(&self.db.pool, &id, "failed", Some(&err.0), now).await;
            }
        }
        result
    }
}

async fn deliver(
    client: &HttpClient,
    postmark: &PostmarkConfig,
    from: &str,
    msg: &Message<'_>,
) -> Result<(), MailError> {
    let body = serde_json::json!({
        "From": from,
        "To": msg.to,
        "Subject": msg.subject,
        "TextBody": msg.body,
        "MessageStream": "outbound",
        "Tag": msg.kind,
    });
    let req = Request::post(format!("{}/email", postmark.url.trim_end_matches('/')))
        .header("accept", "application/json")
        .header("content-type", "application/json")
        .header("x-postmark-server-token", &postmark.token)
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| MailError(format!("bad provider request: {e}")))?;
    let (status, body) = http_client::fetch(client, req, Duration::from_secs(10))
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
