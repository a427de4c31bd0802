//! The audit event: who did what, when, from where, and how it ended.

use std::{
    borrow::Cow,
    fmt::Write as _,
    net::IpAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::{Method, StatusCode};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// One audit event, serialised as one JSON object.
///
/// Field names follow the OWASP Logging Cheat Sheet: *when* (`time`), *what*
/// (`action`, `outcome`, `target`, `reason`), *who* (`actor`) and *where from*
/// (`client_ip`, `user_agent`, `request_id`, `method`, `route`). Fields that are
/// unknown are left out of the JSON; `extra` is a small map of anything else.
///
/// The [`AuditLayer`](super::AuditLayer) fills the request fields; handlers add
/// the rest through the [`AuditContext`](super::AuditContext). Outside a request,
/// build one with [`AuditEvent::new`] and record it with
/// [`Auditor::record`](super::Auditor::record).
///
/// ```
/// use steadfast::audit::{AuditEvent, Outcome};
///
/// let event = AuditEvent::new("campaign.archive")
///     .with_outcome(Outcome::Success)
///     .with_actor("job:nightly-cleanup")
///     .with_target("campaign", "42")
///     .with_extra("age_days", 400);
/// let json: serde_json::Value = serde_json::from_str(&event.to_json()).unwrap();
/// assert_eq!(json["action"], "campaign.archive");
/// assert_eq!(json["outcome"], "success");
/// assert_eq!(json["target"]["type"], "campaign");
/// assert_eq!(json["extra"]["age_days"], 400);
/// assert!(json["time"].as_str().unwrap().ends_with('Z'));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AuditEvent {
    /// When it happened: for a request, when the request arrived. Written as
    /// RFC 3339 UTC with milliseconds (`2025-01-31T08:15:02.120Z`).
    #[serde(serialize_with = "serialize_time")]
    pub time: SystemTime,
    /// What happened, as a dotted name from the OWASP vocabulary where one fits
    /// (`authn.login.success`, `authz.fail`) or an application action (`campaign.create`).
    pub action: Cow<'static, str>,
    /// How it ended.
    pub outcome: Outcome,
    /// Who did it: a user id, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Where from: the client address (see [`TrustedProxies`](super::TrustedProxies)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<IpAddr>,
    /// The client's `User-Agent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The request id (the `x-request-id` header, which tower-http's
    /// `SetRequestIdLayer` sets; see [`AuditLayer::request_id_header`](super::AuditLayer::request_id_header)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The request method.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_method"
    )]
    pub method: Option<Method>,
    /// The route pattern (`/campaigns/{id}`), never the raw path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The response status.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_status"
    )]
    pub status: Option<StatusCode>,
    /// How long the service took to produce the response head; written as
    /// `latency_ms` (milliseconds, microsecond precision).
    #[serde(
        rename = "latency_ms",
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_latency"
    )]
    pub latency: Option<Duration>,
    /// The resource acted upon.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// Why it ended the way it did: a handler's reason (`unknown user`), or the
    /// class of the failure (`client`, `timeout`) from the error handler.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Anything else worth keeping. Keys that name secrets are redacted before
    /// any sink sees the event (see [`Redaction`](super::Redaction)).
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl AuditEvent {
    /// An event for `action`, now, with outcome [`Outcome::Success`] and nothing else known.
    pub fn new(action: impl Into<Cow<'static, str>>) -> Self {
        Self {
            time: SystemTime::now(),
            action: action.into(),
            outcome: Outcome::Success,
            actor: None,
            client_ip: None,
            user_agent: None,
            request_id: None,
            method: None,
            route: None,
            status: None,
            latency: None,
            target: None,
            reason: None,
            extra: Map::new(),
        }
    }

    /// Sets the time.
    pub fn with_time(mut self, time: SystemTime) -> Self {
        self.time = time;
        self
    }

    /// Sets the outcome.
    pub fn with_outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// Sets the actor.
    pub fn with_actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Sets the client address.
    pub fn with_client_ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }

    /// Sets the target: a resource type (`campaign`) and its id.
    pub fn with_target(
        mut self,
        kind: impl Into<Cow<'static, str>>,
        id: impl Into<String>,
    ) -> Self {
        self.target = Some(Target::new(kind, id));
        self
    }

    /// Sets the reason.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Adds an extra field.
    pub fn with_extra(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// [`time`](Self::time) as RFC 3339 UTC with milliseconds.
    pub fn timestamp(&self) -> String {
        rfc3339(self.time)
    }

    /// The event as one line of JSON (no newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an audit event always serialises")
    }
}

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It did what was asked (2xx and 3xx responses).
    Success,
    /// The request was wrong or the action failed on its merits (4xx other than 401 and 403).
    Failure,
    /// The actor was not authenticated or not allowed (401, 403).
    Denied,
    /// The server failed (5xx, a service error, a cancelled request).
    Error,
}

impl Outcome {
    /// The outcome a response status stands for.
    ///
    /// ```
    /// use steadfast::audit::Outcome;
    /// use http::StatusCode;
    ///
    /// assert_eq!(Outcome::from_status(StatusCode::SEE_OTHER), Outcome::Success);
    /// assert_eq!(Outcome::from_status(StatusCode::FORBIDDEN), Outcome::Denied);
    /// assert_eq!(Outcome::from_status(StatusCode::CONFLICT), Outcome::Failure);
    /// assert_eq!(Outcome::from_status(StatusCode::BAD_GATEWAY), Outcome::Error);
    /// ```
    pub fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Self::Denied,
            s if s.is_server_error() => Self::Error,
            s if s.is_client_error() => Self::Failure,
            _ => Self::Success,
        }
    }

    /// The lower-case name used in the JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
            Self::Error => "error",
        }
    }
}

/// The resource an action was performed on; written as `{"type": .., "id": ..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Target {
    /// The resource type (`campaign`, `user`).
    #[serde(rename = "type")]
    pub kind: Cow<'static, str>,
    /// The resource id.
    pub id: String,
}

impl Target {
    /// A target of `kind` with `id`.
    pub fn new(kind: impl Into<Cow<'static, str>>, id: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            id: id.into(),
        }
    }
}

fn serialize_time<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*time))
}

fn serialize_method<S: Serializer>(method: &Option<Method>, s: S) -> Result<S::Ok, S::Error> {
    match method {
        Some(m) => s.serialize_str(m.as_str()),
        None => s.serialize_none(),
    }
}

fn serialize_status<S: Serializer>(status: &Option<StatusCode>, s: S) -> Result<S::Ok, S::Error> {
    match status {
        Some(st) => s.serialize_u16(st.as_u16()),
        None => s.serialize_none(),
    }
}

fn serialize_latency<S: Serializer>(latency: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match latency {
        Some(d) => s.serialize_f64(d.as_micros() as f64 / 1000.0),
        None => s.serialize_none(),
    }
}

/// Formats `time` as RFC 3339 UTC with milliseconds: `1970-01-01T00:00:00.000Z`.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let (secs, millis) = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_millis()),
        Err(e) => {
            // Before 1970: round down to the millisecond below.
            let d = e.duration();
            let total_ms = d.as_millis() as i64;
            let floor_ms = -total_ms;
            (floor_ms.div_euclid(1000), floor_ms.rem_euclid(1000) as u32)
        }
    };
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = String::with_capacity(24);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    );
    out
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis)
    }

    #[test]
    fn formats_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(at(951_782_400, 5)), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(at(1_700_000_000, 123)), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(at(4_102_444_799, 999)), "2099-12-31T23:59:59.999Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_millis(1)),
            "1969-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn serialises_known_fields_only() {
        let mut event = AuditEvent::new("authn.login.fail")
            .with_time(at(1_700_000_000, 0))
            .with_outcome(Outcome::Denied);
        event.latency = Some(Duration::from_micros(1_234));
        event.status = Some(StatusCode::UNAUTHORIZED);
        event.method = Some(Method::POST);
        let json: Value = serde_json::from_str(&event.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "time": "2023-11-14T22:13:20.000Z",
                "action": "authn.login.fail",
                "outcome": "denied",
                "method": "POST",
                "status": 401,
                "latency_ms": 1.234,
            })
        );
    }
}
