//! Keeping secrets and log injection out of audit events.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::AuditEvent;

/// The value written in place of a redacted field.
pub const REDACTED: &str = "[REDACTED]";

/// The field names redacted by default (matched as case-insensitive substrings).
pub const DEFAULT_REDACTED_FIELDS: &[&str] = &[
    "password",
    "token",
    "secret",
    "authorization",
    "cookie",
    "api_key",
];

/// What the writer scrubs from every event before any sink sees it.
///
/// - **Secrets**: an `extra` field (at any depth of nested objects) whose name
///   contains one of the configured names has its value replaced by
///   `"[REDACTED]"`. Matching ignores case, `_`, `-` and `.`, so `api_key` also
///   catches `apiKey`, `X-Api-Key` and `client.api_key`.
/// - **Log injection**: CR, LF, tabs and every other control character (and the
///   Unicode line and paragraph separators) in any string of the event are
///   escaped as `\r`, `\n`, `\t` or `\u001b`, so no value can forge a log line.
/// - **Emails** (off by default): `jane@example.com` in the actor, target id,
///   reason or an `extra` string becomes `j***@example.com`.
///
/// ```
/// use steadfast::audit::{AuditEvent, Redaction};
///
/// let redaction = Redaction::new().redact_field("ssn").mask_emails(true);
/// let mut event = AuditEvent::new("authn.signup")
///     .with_actor("jane@example.com")
///     .with_extra("Password", "hunter2")
///     .with_extra("ssn", "078-05-1120")
///     .with_reason("line one\nforged line");
/// redaction.apply(&mut event);
/// assert_eq!(event.actor.as_deref(), Some("j***@example.com"));
/// assert_eq!(event.extra["Password"], "[REDACTED]");
/// assert_eq!(event.extra["ssn"], "[REDACTED]");
/// assert_eq!(event.reason.as_deref(), Some("line one\\nforged line"));
/// ```
#[derive(Debug, Clone)]
pub struct Redaction {
    /// Normalised (lower case, no `_`, `-`, `.`) names.
    fields: Vec<String>,
    mask_emails: bool,
}

impl Redaction {
    /// The defaults: [`DEFAULT_REDACTED_FIELDS`], control characters escaped,
    /// emails kept.
    pub fn new() -> Self {
        Self {
            fields: DEFAULT_REDACTED_FIELDS
                .iter()
                .map(|f| normalise(f))
                .collect(),
            mask_emails: false,
        }
    }

    /// Also redacts fields whose name contains `name`.
    pub fn redact_field(mut self, name: &str) -> Self {
        let name = normalise(name);
        if !name.is_empty() && !self.fields.contains(&name) {
            self.fields.push(name);
        }
        self
    }

    /// Redacts exactly these names instead of the defaults.
    pub fn redact_fields<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.fields.clear();
        for name in names {
            self = self.redact_field(name.as_ref());
        }
        self
    }

    /// Whether email addresses are masked to `j***@example.com` (default false).
    pub fn mask_emails(mut self, mask: bool) -> Self {
        self.mask_emails = mask;
        self
    }

    /// Whether a field called `name` is redacted.
    pub fn is_redacted(&self, name: &str) -> bool {
        let name = normalise(name);
        self.fields.iter().any(|f| name.contains(f.as_str()))
    }

    /// Scrubs `event` in place.
    pub fn apply(&self, event: &mut AuditEvent) {
        escape_in_place_cow(&mut event.action);
        for value in [
            &mut event.user_agent,
            &mut event.request_id,
            &mut event.route,
        ]
        .into_iter()
        .flatten()
        {
            escape_in_place(value);
        }
        for value in [&mut event.actor, &mut event.reason].into_iter().flatten() {
            self.scrub_text(value);
        }
        if let Some(target) = &mut event.target {
            escape_in_place_cow(&mut target.kind);
            self.scrub_text(&mut target.id);
        }
        self.scrub_map(&mut event.extra);
    }

    fn scrub_text(&self, value: &mut String) {
        escape_in_place(value);
        if self.mask_emails
            && let Cow::Owned(masked) = mask_emails(value)
        {
            *value = masked;
        }
    }

    fn scrub_map(&self, map: &mut Map<String, Value>) {
        let needs_key_escape = map.keys().any(|k| has_control(k));
        if needs_key_escape {
            let old = std::mem::take(map);
            for (key, value) in old {
                map.insert(escape(&key).into_owned(), value);
            }
        }
        for (key, value) in map.iter_mut() {
            if self.is_redacted(key) {
                *value = Value::String(REDACTED.to_owned());
            } else {
                self.scrub_value(value);
            }
        }
    }

    fn scrub_value(&self, value: &mut Value) {
        match value {
            Value::String(s) => self.scrub_text(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_value(v)),
            Value::Object(map) => self.scrub_map(map),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

impl Default for Redaction {
    fn default() -> Self {
        Self::new()
    }
}

fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-' | '.'))
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn is_escaped_char(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

fn has_control(s: &str) -> bool {
    s.chars().any(is_escaped_char)
}

/// `s` with CR, LF, tab and every other control character escaped; borrowed
/// when there is nothing to escape.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !has_control(s) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if is_escaped_char(c) => {
                use std::fmt::Write as _;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn escape_in_place(value: &mut String) {
    if let Cow::Owned(escaped) = escape(value) {
        *value = escaped;
    }
}

fn escape_in_place_cow(value: &mut Cow<'static, str>) {
    if let Cow::Owned(escaped) = escape(value) {
        *value = Cow::Owned(escaped);
    }
}

fn is_local_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

/// Masks every email address in `s` to its first character, `***` and the domain.
fn mask_emails(s: &str) -> Cow<'_, str> {
    let bytes = s.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'@' {
            i += 1;
            continue;
        }
        let mut start = i;
        while start > copied && is_local_char(bytes[start - 1]) {
            start -= 1;
        }
        let mut end = i + 1;
        while end < bytes.len() && is_domain_char(bytes[end]) {
            end += 1;
        }
        let domain = &s[i + 1..end];
        let is_email = start < i
            && domain.contains('.')
            && !domain.starts_with(['.', '-'])
            && !domain.ends_with(['.', '-']);
        if is_email {
            let out = out.get_or_insert_with(|| String::with_capacity(s.len()));
            out.push_str(&s[copied..start]);
            // The local part is ASCII, so its first byte is a whole character.
            out.push_str(&s[start..start + 1]);
            out.push_str("***@");
            out.push_str(domain);
            copied = end;
        }
        i = end.max(i + 1);
    }
    match out {
        None => Cow::Borrowed(s),
        Some(mut out) => {
            out.push_str(&s[copied..]);
            Cow::Owned(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_characters() {
        assert_eq!(escape("plain"), Cow::Borrowed("plain"));
        assert_eq!(
            escape("a\r\nb\tc\u{1b}[31m\u{7f}\u{2028}"),
            "a\\r\\nb\\tc\\u001b[31m\\u007f\\u2028"
        );
    }

    #[test]
    fn masks_emails_in_text() {
        assert_eq!(mask_emails("jane@example.com"), "j***@example.com");
        assert_eq!(
            mask_emails("no user a.b+c@mail.example.org, try x@y.io"),
            "no user a***@mail.example.org, try x***@y.io"
        );
        assert_eq!(
            mask_emails("@handle and me@localhost"),
            "@handle and me@localhost"
        );
        assert!(matches!(mask_emails("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn redacts_nested_keys_by_normalised_substring() {
        let r = Redaction::new();
        for name in [
            "password",
            "new_password",
            "X-Api-Key",
            "apiKey",
            "Set-Cookie",
            "refreshToken",
            "AUTHORIZATION",
        ] {
            assert!(r.is_redacted(name), "{name}");
        }
        for name in ["user", "email", "campaign_id"] {
            assert!(!r.is_redacted(name), "{name}");
        }
        let mut event = AuditEvent::new("x").with_extra(
            "request",
            serde_json::json!({"user": "u1", "credentials": {"Password": "p"}, "list": [{"token": "t"}]}),
        );
        r.apply(&mut event);
        assert_eq!(
            event.extra["request"],
            serde_json::json!({"user": "u1", "credentials": {"Password": REDACTED}, "list": [{"token": REDACTED}]})
        );
    }

    #[test]
    fn custom_field_list_replaces_defaults() {
        let r = Redaction::new().redact_fields(["ssn"]);
        assert!(r.is_redacted("SSN"));
        assert!(!r.is_redacted("password"));
    }
}
