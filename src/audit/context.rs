//! [`AuditContext`]: the handler's handle on its request's audit event.

use std::{
    borrow::Cow,
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::SystemTime,
};

use http::{HeaderValue, Method, Request, Response, header::USER_AGENT};
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::{AuditEvent, Outcome, Target, layer::Config, writer::SendLater};
use crate::{Classification, classify::classify_status};

/// The audit event of the current request, for its handler to enrich.
///
/// The [`AuditLayer`](super::AuditLayer) puts one in the request extensions of
/// every audited request (and only those). Handlers take it as an axum
/// extractor (`Option<AuditContext>` where the route may not be audited; the
/// plain extractor answers a 500 problem when it is missing, because that is a
/// wiring mistake) or with [`from_extensions`](Self::from_extensions), and say
/// what the layer cannot know: who the actor is, what the target was, why it
/// failed. It is cheap to clone and may be moved into spawned work.
///
/// ```
/// use axum::{Json, http::StatusCode};
/// use steadfast::audit::{AuditContext, Outcome};
///
/// #[derive(serde::Deserialize)]
/// struct Login { email: String, password: String }
///
/// async fn login(audit: AuditContext, Json(form): Json<Login>) -> StatusCode {
///     audit.insert_extra("email", form.email.clone());
///     if form.password == "correct horse" {
///         audit.set_actor("user-7");
///         audit.set_action("authn.login.success");
///         StatusCode::NO_CONTENT
///     } else {
///         audit.set_action("authn.login.fail");
///         audit.set_reason("wrong password");
///         StatusCode::UNAUTHORIZED
///     }
/// }
/// let app: axum::Router = axum::Router::new().route("/login", axum::routing::post(login));
/// # let _ = app;
/// ```
///
/// Enrichment made after the response has been produced is ignored; events
/// [recorded](Self::record) after it are sent on their own.
#[derive(Clone)]
pub struct AuditContext {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    rule: usize,
    time: SystemTime,
    start: Instant,
    method: Method,
    client_ip: Option<IpAddr>,
    user_agent: Option<HeaderValue>,
    request_id: Option<HeaderValue>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    finished: bool,
    action: Option<Cow<'static, str>>,
    outcome: Option<Outcome>,
    actor: Option<String>,
    target: Option<Target>,
    reason: Option<String>,
    extra: Map<String, Value>,
    events: Vec<AuditEvent>,
}

/// How the request ended, as far as the audit is concerned.
pub(crate) enum Ending<'a, B> {
    Response(&'a Response<B>),
    ServiceError,
    Cancelled,
}

impl AuditContext {
    /// The context of an audited request, captured before the inner service runs.
    pub(crate) fn capture<B>(config: Arc<Config>, rule: usize, request: &Request<B>) -> Self {
        let request_id = crate::headers::get(request.headers(), &config.request_id_header).cloned();
        let client_ip = config.proxies.resolve(request);
        Self {
            inner: Arc::new(Inner {
                config,
                rule,
                time: SystemTime::now(),
                start: Instant::now(),
                method: request.method().clone(),
                client_ip,
                user_agent: request.headers().get(USER_AGENT).cloned(),
                request_id,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The context in `extensions`, if the request is audited.
    pub fn from_extensions(extensions: &http::Extensions) -> Option<&AuditContext> {
        extensions.get::<AuditContext>()
    }

    /// Sets who performed the action (a user id).
    pub fn set_actor(&self, actor: impl Into<String>) {
        self.update(|s| s.actor = Some(actor.into()));
    }

    /// Sets the resource acted upon.
    pub fn set_target(&self, kind: impl Into<Cow<'static, str>>, id: impl Into<String>) {
        self.update(|s| s.target = Some(Target::new(kind, id)));
    }

    /// Overrides the outcome the layer would derive from the status.
    pub fn set_outcome(&self, outcome: Outcome) {
        self.update(|s| s.outcome = Some(outcome));
    }

    /// Says why the action ended as it did.
    pub fn set_reason(&self, reason: impl Into<String>) {
        self.update(|s| s.reason = Some(reason.into()));
    }

    /// Overrides the action configured for the route (e.g. `authn.login.fail`).
    pub fn set_action(&self, action: impl Into<Cow<'static, str>>) {
        self.update(|s| s.action = Some(action.into()));
    }

    /// Adds an extra field. Secret-looking names are redacted before writing.
    pub fn insert_extra(&self, key: impl Into<String>, value: impl Into<Value>) {
        self.update(|s| {
            s.extra.insert(key.into(), value.into());
        });
    }

    /// Records another event for this request (e.g. `authn.password.change`
    /// next to the route's own). Its unknown request fields — client IP, user
    /// agent, request id, method, route, actor — are filled from the request.
    /// It is sent with the request's event, or at once after the response.
    pub fn record(&self, event: AuditEvent) {
        let mut state = self.lock();
        if state.finished {
            drop(state);
            let event = self.fill(event, None);
            self.inner.config.auditor.try_record(event);
        } else {
            state.events.push(event);
        }
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        let mut state = self.lock();
        if state.finished {
            tracing::debug!(
                target: "steadfast::audit",
                "audit context changed after the response; ignored"
            );
            return;
        }
        f(&mut state);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Fills the request fields `event` does not have.
    fn fill(&self, mut event: AuditEvent, actor: Option<&String>) -> AuditEvent {
        let inner = &*self.inner;
        if event.client_ip.is_none() {
            event.client_ip = inner.client_ip;
        }
        if event.user_agent.is_none() {
            event.user_agent = inner.user_agent.as_ref().map(header_string);
        }
        if event.request_id.is_none() {
            event.request_id = inner.request_id.as_ref().map(header_string);
        }
        if event.method.is_none() {
            event.method = Some(inner.method.clone());
        }
        if event.route.is_none() {
            event.route = Some(inner.config.rules[inner.rule].pattern.to_string());
        }
        if event.actor.is_none() {
            event.actor = actor.cloned();
        }
        event
    }

    /// Records the request's events and returns the wait for those that did
    /// not fit in the queue, if the policy allows one. A cancelled request
    /// cannot wait: what does not fit is counted as dropped.
    pub(crate) fn finish<B>(self, ending: Ending<'_, B>) -> Option<SendLater> {
        let can_wait = !matches!(ending, Ending::Cancelled);
        let inner = &*self.inner;
        let rule = &inner.config.rules[inner.rule];
        let (status, outcome, default_reason) = match ending {
            Ending::Response(res) => {
                let status = res.status();
                let reason = res
                    .extensions()
                    .get::<Classification>()
                    .map(|c| c.class())
                    .or_else(|| classify_status(status))
                    .map(|class| class.as_str());
                (Some(status), Outcome::from_status(status), reason)
            }
            Ending::ServiceError => (None, Outcome::Error, Some("service error")),
            Ending::Cancelled => (None, Outcome::Error, Some("cancelled")),
        };
        let mut state = self.lock();
        state.finished = true;
        let extra_events = std::mem::take(&mut state.events);
        let event = AuditEvent {
            time: inner.time,
            action: state.action.take().unwrap_or_else(|| rule.action.clone()),
            outcome: state.outcome.unwrap_or(outcome),
            actor: state.actor.take(),
            client_ip: inner.client_ip,
            user_agent: inner.user_agent.as_ref().map(header_string),
            request_id: inner.request_id.as_ref().map(header_string),
            method: Some(inner.method.clone()),
            route: Some(rule.pattern.to_string()),
            status,
            latency: Some(inner.start.elapsed()),
            target: state.target.take(),
            reason: state
                .reason
                .take()
                .or_else(|| default_reason.map(str::to_owned)),
            extra: std::mem::take(&mut state.extra),
        };
        drop(state);

        let auditor = &inner.config.auditor;
        let actor = if extra_events.is_empty() {
            None
        } else {
            event.actor.clone()
        };
        let mut later = Vec::new();
        if let Err(event) = auditor.try_enqueue(event) {
            later.push(event);
        }
        for extra in extra_events {
            let extra = self.fill(extra, actor.as_ref());
            // Keep the order: once one event waits, the rest wait behind it.
            if !later.is_empty() {
                later.push(extra);
            } else if let Err(extra) = auditor.try_enqueue(extra) {
                later.push(extra);
            }
        }
        if later.is_empty() {
            None
        } else if can_wait {
            auditor.send_later(later)
        } else {
            auditor.note_dropped(later, "queue full");
            None
        }
    }
}

impl std::fmt::Debug for AuditContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rule = &self.inner.config.rules[self.inner.rule];
        f.debug_struct("AuditContext")
            .field("action", &rule.action)
            .field("method", &self.inner.method)
            .field("route", &rule.pattern)
            .finish_non_exhaustive()
    }
}

fn header_string(value: &HeaderValue) -> String {
    match value.to_str() {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
    }
}

#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for AuditContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<AuditContext>().cloned())
    }
}

#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for AuditContext {
    type Rejection = crate::Problem;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<AuditContext>()
            .cloned()
            .ok_or_else(|| {
                crate::Problem::new(http::StatusCode::INTERNAL_SERVER_ERROR)
                    .with_detail("The server is misconfigured: this route is not audited.")
            })
    }
}
