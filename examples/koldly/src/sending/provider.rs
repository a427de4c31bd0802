//! Where campaign mail goes: the `sent_mail` table (the default: koldly runs
//! without a mail provider, and its owner sees exactly what would have gone
//! out at `GET /api/sent-mail`), or a Mailgun-compatible HTTP API.
//!
//! | Provider | A worker dies mid-send | Guarantee |
//! |---|---|---|
//! | `sent_mail` | the row becomes `unknown`, then is resolved by looking the queue row up in `sent_mail`: `sent` if written, queued again if not | exactly once |
//! | Mailgun | the row becomes `unknown` and stays so (counted in `GET .../sending`, listed in `GET .../sending/unknown`, resolved by hand with `POST .../sending/unknown/{queue_id}`): it is never resent on its own | at most once per row |
//!
//! A Mailgun call goes through koldly's retrying client (steadfast's
//! `RetryLayer` around the mail circuit breaker): within one call, only a
//! failure proving the message was not accepted is repeated (connection
//! refused, 429, 503, an open circuit). When the call still fails that way,
//! the row is queued again for a later tick ([`SendError::NotAccepted`]);
//! another 4xx fails it with its reason; anything else (a timeout, a 500, a
//! reset connection) may come after the provider took it, so the row is
//! `unknown`, never resent.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use steadfast::{
    ErrorClass,
    classify::{Classification, classify_error, classify_status},
    retry::RetryPolicy,
};

use crate::{
    db::{Db, sent_mail},
    http_client::{self, RetryingClient},
};

/// One message, fully formed.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    /// The queue row.
    pub queue_id: String,
    /// The owner (for `sent_mail`).
    pub user_id: String,
    /// `From:` (`Name <address>`).
    pub from: String,
    /// Recipient address.
    pub to: String,
    /// `Reply-To:`.
    pub reply_to: Option<String>,
    /// Subject.
    pub subject: String,
    /// Plain text.
    pub text: String,
    /// HTML.
    pub html: String,
    /// `Message-ID` with its angle brackets.
    pub message_id: String,
    /// The signed one-click unsubscribe link.
    pub unsubscribe_url: String,
    /// An answer's `In-Reply-To` (the reply's Message-ID).
    pub in_reply_to: Option<String>,
    /// An answer's `References` (the thread's Message-IDs, oldest first).
    pub references: Option<String>,
}

impl OutgoingMessage {
    /// The headers every message carries besides From/To/Subject: its own
    /// `Message-ID`, `Reply-To`, an answer's `In-Reply-To` and `References`,
    /// and RFC 8058 one-click unsubscribe.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![("Message-ID", self.message_id.clone())];
        if let Some(reply_to) = &self.reply_to {
            headers.push(("Reply-To", reply_to.clone()));
        }
        if let Some(in_reply_to) = &self.in_reply_to {
            headers.push(("In-Reply-To", in_reply_to.clone()));
        }
        if let Some(references) = &self.references {
            headers.push(("References", references.clone()));
        }
        headers.push(("List-Unsubscribe", format!("<{}>", self.unsubscribe_url)));
        headers.push((
            "List-Unsubscribe-Post",
            "List-Unsubscribe=One-Click".to_owned(),
        ));
        headers
    }
}

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The failure proves the provider did not take it: send it again later.
    NotAccepted(String),
    /// Refused for good (a 4xx other than 429): fail the row with the reason.
    Rejected(String),
    /// The provider may have taken it: never resend.
    Unknown(String),
}

/// What a provider knows of a message whose send was interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// It has it.
    Delivered,
    /// It never got it.
    NeverReceived,
    /// It cannot say.
    Unsupported,
}

/// A Mailgun-compatible API: `POST {base}/messages` with basic auth
/// `api:{key}`, form-encoded.
#[derive(Clone)]
pub struct MailgunConfig {
    /// `MAIL_API_BASE`, e.g. `https://api.mailgun.net/v3/mg.example.com`.
    pub base: String,
    /// `MAIL_API_KEY`.
    pub key: String,
}

impl std::fmt::Debug for MailgunConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailgunConfig")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// The configured provider.
#[derive(Clone)]
pub enum Provider {
    /// Writes to `sent_mail`.
    SentMail(Db),
    /// A Mailgun-compatible HTTP API (boxed: the client is large).
    Mailgun(Box<(MailgunConfig, RetryingClient)>),
}

/// Which failures a later tick may repeat: those proving the message was not
/// accepted (steadfast's classification, the mail client's predicate).
pub fn resend_policy() -> RetryPolicy {
    RetryPolicy::new().retry_if(http_client::proves_not_accepted)
}

impl Provider {
    /// Its name, for logs and the README's table.
    pub fn name(&self) -> &'static str {
        match self {
            Self::SentMail(_) => "sent_mail",
            Self::Mailgun(..) => "mailgun",
        }
    }

    /// Sends `msg`; the provider's message id on success.
    pub async fn send(&self, msg: &OutgoingMessage, now: i64) -> Result<Option<String>, SendError> {
        match self {
            Self::SentMail(db) => {
                let headers: Vec<[String; 2]> = msg
                    .headers()
                    .into_iter()
                    .map(|(k, v)| [k.to_owned(), v])
                    .collect();
                let headers = serde_json::to_string(&headers).unwrap_or_default();
                sent_mail::insert(
                    &db.pool,
                    &sent_mail::NewSentMail {
                        user_id: &msg.user_id,
                        queue_id: &msg.queue_id,
                        message_id: &msg.message_id,
                        from: &msg.from,
                        to: &msg.to,
                        reply_to: msg.reply_to.as_deref(),
                        subject: &msg.subject,
                        text: &msg.text,
                        html: &msg.html,
                        headers: &headers,
                    },
                    now,
                )
                .await
                // A database failure here: the row may or may not be written;
                // the lookup after the lease settles it.
                .map_err(|e| SendError::Unknown(format!("sent_mail write failed: {e}")))?;
                Ok(Some(msg.message_id.clone()))
            }
            Self::Mailgun(provider) => mailgun(&provider.0, &provider.1, msg).await,
        }
    }

    /// What the provider knows of the message of queue row `queue_id`.
    pub async fn lookup(&self, queue_id: &str) -> Lookup {
        match self {
            Self::SentMail(db) => match sent_mail::exists(&db.pool, queue_id).await {
                Ok(true) => Lookup::Delivered,
                Ok(false) => Lookup::NeverReceived,
                Err(e) => {
                    tracing::warn!(error = %e, "sent_mail lookup failed");
                    Lookup::Unsupported
                }
            },
            Self::Mailgun(..) => Lookup::Unsupported,
        }
    }
}

/// The form Mailgun's `POST /messages` takes.
pub fn mailgun_form(msg: &OutgoingMessage) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("from", &msg.from)
        .append_pair("to", &msg.to)
        .append_pair("subject", &msg.subject)
        .append_pair("text", &msg.text)
        .append_pair("html", &msg.html)
        .append_pair("h:Message-Id", &msg.message_id)
        .append_pair("h:List-Unsubscribe", &format!("<{}>", msg.unsubscribe_url))
        .append_pair("h:List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
        .append_pair("v:queue_id", &msg.queue_id);
    if let Some(reply_to) = &msg.reply_to {
        form.append_pair("h:Reply-To", reply_to);
    }
    if let Some(in_reply_to) = &msg.in_reply_to {
        form.append_pair("h:In-Reply-To", in_reply_to);
    }
    if let Some(references) = &msg.references {
        form.append_pair("h:References", references);
    }
    form.finish()
}

async fn mailgun(
    config: &MailgunConfig,
    client: &RetryingClient,
    msg: &OutgoingMessage,
) -> Result<Option<String>, SendError> {
    use base64::{Engine, engine::general_purpose::STANDARD};
    let auth = format!("Basic {}", STANDARD.encode(format!("api:{}", config.key)));
    let req = Request::post(format!("{}/messages", config.base.trim_end_matches('/')))
        .header("authorization", auth)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        // Tells the retry layer this POST may be repeated at all; which
        // failures are repeated is `proves_not_accepted`'s choice.
        .header("idempotency-key", &msg.queue_id)
        .body(Full::new(Bytes::from(mailgun_form(msg))))
        .map_err(|e| SendError::Rejected(format!("bad provider request: {e}")))?;
    let policy = resend_policy();
    let (status, body) = http_client::fetch(client.clone(), req, Duration::from_secs(30))
        .await
        .map_err(|e| {
            let failure = classify_error(&*e);
            if policy.is_retryable(&failure) {
                SendError::NotAccepted(format!("mail provider did not take it: {e}"))
            } else {
                SendError::Unknown(format!("mail provider call failed, outcome unknown: {e}"))
            }
        })?;
    if status.is_success() {
        let id = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_owned));
        return Ok(id);
    }
    let failure = Classification::new(classify_status(status).unwrap_or(ErrorClass::Server))
        .with_status(status);
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    let reason = format!("mail provider answered {status}: {text}");
    if policy.is_retryable(&failure) {
        Err(SendError::NotAccepted(reason))
    } else if status.is_client_error() && status != StatusCode::REQUEST_TIMEOUT {
        Err(SendError::Rejected(reason))
    } else {
        Err(SendError::Unknown(reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> OutgoingMessage {
        OutgoingMessage {
            queue_id: "q1".into(),
            user_id: "u1".into(),
            from: "Ann <ann@example.com>".into(),
            to: "lead@example.org".into(),
            reply_to: Some("replies@example.com".into()),
            subject: "Hi & bye".into(),
            text: "Hello".into(),
            html: "<p>Hello</p>".into(),
            message_id: "<abc@example.com>".into(),
            unsubscribe_url: "http://k.test/u/tok".into(),
            in_reply_to: Some("<reply@lead.example>".into()),
            references: Some("<abc0@example.com> <reply@lead.example>".into()),
        }
    }

    #[test]
    fn the_mailgun_form_carries_every_field() {
        let form: Vec<(String, String)> = form_urlencoded::parse(mailgun_form(&msg()).as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("from"), Some("Ann <ann@example.com>"));
        assert_eq!(get("subject"), Some("Hi & bye"));
        assert_eq!(get("h:Reply-To"), Some("replies@example.com"));
        assert_eq!(get("h:Message-Id"), Some("<abc@example.com>"));
        assert_eq!(get("v:queue_id"), Some("q1"));
        assert_eq!(get("h:In-Reply-To"), Some("<reply@lead.example>"));
        assert_eq!(
            get("h:References"),
            Some("<abc0@example.com> <reply@lead.example>")
        );
        assert_eq!(get("h:List-Unsubscribe"), Some("<http://k.test/u/tok>"));
        assert_eq!(
            get("h:List-Unsubscribe-Post"),
            Some("List-Unsubscribe=One-Click")
        );
    }

    #[test]
    fn only_failures_that_prove_non_acceptance_are_resent() {
        let policy = resend_policy();
        let status = |s: StatusCode| {
            Classification::new(classify_status(s).unwrap_or(ErrorClass::Server)).with_status(s)
        };
        assert!(policy.is_retryable(&status(StatusCode::TOO_MANY_REQUESTS)));
        assert!(policy.is_retryable(&status(StatusCode::SERVICE_UNAVAILABLE)));
        assert!(!policy.is_retryable(&status(StatusCode::BAD_GATEWAY)));
        assert!(!policy.is_retryable(&status(StatusCode::INTERNAL_SERVER_ERROR)));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(policy.is_retryable(&classify_error(&refused)));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(!policy.is_retryable(&classify_error(&reset)));
    }
}
