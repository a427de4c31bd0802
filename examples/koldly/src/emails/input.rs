//! What email requests may carry, and their rules.

use serde::Deserialize;

use crate::{error::ApiError, validation::FieldErrors};

/// Longest subject a user may write, in characters.
pub const SUBJECT_MAX: usize = 200;
/// Longest body a user may write, in characters.
pub const BODY_MAX: usize = 10_000;
/// Longest regeneration feedback or rejection reason, in characters.
pub const NOTE_MAX: usize = 2000;
/// Most prospects one generation request names.
pub const MAX_PROSPECT_IDS: usize = 500;
/// Most emails one bulk approval names.
pub const MAX_BULK_IDS: usize = 100;

/// `POST /api/campaigns/{id}/emails/generate`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Generate {
    /// Draft for these prospects of the campaign; absent: every prospect
    /// without an email yet.
    #[serde(default)]
    #[schema(value_type = Option<Vec<crate::openapi::Uuid>>, min_items = 1, max_items = 500)]
    pub prospect_ids: Option<Vec<String>>,
}

impl Generate {
    /// The named prospects (deduplicated, in order), or `None` for the default.
    pub fn validate(self) -> Result<Option<Vec<String>>, ApiError> {
        let Some(ids) = self.prospect_ids else {
            return Ok(None);
        };
        let mut errors = FieldErrors::new();
        if ids.is_empty() || ids.len() > MAX_PROSPECT_IDS {
            errors.add(
                "prospect_ids",
                format!("must list 1 to {MAX_PROSPECT_IDS} prospect ids"),
            );
        }
        check_ids(&mut errors, "prospect_ids", &ids);
        errors.finish()?;
        Ok(Some(dedup(ids)))
    }
}

/// `POST /api/emails/{id}/regenerate`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Regenerate {
    /// What the new draft should do differently.
    #[serde(default)]
    pub feedback: Option<String>,
}

impl Regenerate {
    /// The feedback, trimmed (`None` when empty).
    pub fn validate(self) -> Result<Option<String>, ApiError> {
        let mut errors = FieldErrors::new();
        let feedback = errors.optional_text("feedback", self.feedback.as_deref(), NOTE_MAX);
        errors.finish()?;
        Ok(feedback)
    }
}

/// `PATCH /api/emails/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct Edit {
    /// New subject: one line, not blank.
    #[serde(default)]
    #[schema(value_type = String, min_length = 1, max_length = 200, pattern = "^[^\\r\\n]*\\S[^\\r\\n]*$")]
    pub subject: Option<String>,
    /// New body, not blank.
    #[serde(default)]
    #[schema(value_type = String, min_length = 1, max_length = 10000, pattern = "\\S")]
    pub body: Option<String>,
}

impl Edit {
    /// The new subject and body: at least one, neither empty; the subject one
    /// line of at most [`SUBJECT_MAX`] characters, the body at most [`BODY_MAX`].
    pub fn validate(self) -> Result<(Option<String>, Option<String>), ApiError> {
        let mut errors = FieldErrors::new();
        if self.subject.is_none() && self.body.is_none() {
            errors.add("body", "give `subject`, `body` or both");
        }
        let subject = self
            .subject
            .map(|s| errors.required_text("subject", &s, SUBJECT_MAX));
        if subject.as_deref().is_some_and(|s| s.contains(['\n', '\r'])) {
            errors.add("subject", "must be one line");
        }
        let body = self
            .body
            .map(|b| errors.required_text("body", &b, BODY_MAX));
        errors.finish()?;
        Ok((subject, body))
    }
}

/// `POST /api/emails/{id}/reject`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reject {
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

impl Reject {
    /// The reason, trimmed (`None` when empty).
    pub fn validate(self) -> Result<Option<String>, ApiError> {
        let mut errors = FieldErrors::new();
        let reason = errors.optional_text("reason", self.reason.as_deref(), NOTE_MAX);
        errors.finish()?;
        Ok(reason)
    }
}

/// `POST /api/emails/approve`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkApprove {
    /// The emails to approve.
    #[schema(value_type = Vec<crate::openapi::Uuid>, min_items = 1, max_items = 100)]
    pub ids: Vec<String>,
}

impl BulkApprove {
    /// The ids (1 to [`MAX_BULK_IDS`] UUIDs), deduplicated in order.
    pub fn validate(self) -> Result<Vec<String>, ApiError> {
        let mut errors = FieldErrors::new();
        if self.ids.is_empty() || self.ids.len() > MAX_BULK_IDS {
            errors.add(
                "ids",
                format!(
                    "must list 1 to {MAX_BULK_IDS} email ids, not {}",
                    self.ids.len()
                ),
            );
        }
        check_ids(&mut errors, "ids", &self.ids);
        errors.finish()?;
        Ok(dedup(self.ids))
    }
}

/// Every id must be a UUID (ids are; anything else cannot exist).
fn check_ids(errors: &mut FieldErrors, field: &str, ids: &[String]) {
    for (i, id) in ids.iter().enumerate() {
        if uuid::Uuid::try_parse(id).is_err() {
            errors.add(format!("{field}[{i}]"), "is not an id");
        }
    }
}

fn dedup(ids: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    ids.into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_need_a_field_and_keep_the_subject_on_one_line() {
        assert!(
            Edit {
                subject: None,
                body: None
            }
            .validate()
            .is_err()
        );
        assert!(
            Edit {
                subject: Some("Two\nlines".into()),
                body: None
            }
            .validate()
            .is_err()
        );
        let (subject, body) = Edit {
            subject: Some(" Hi ".into()),
            body: Some("Line one\nLine two".into()),
        }
        .validate()
        .unwrap();
        assert_eq!(subject.as_deref(), Some("Hi"));
        assert_eq!(body.as_deref(), Some("Line one\nLine two"));
    }

    #[test]
    fn bulk_ids_are_bounded_and_deduplicated() {
        let id = uuid::Uuid::now_v7().to_string();
        let ids = BulkApprove {
            ids: vec![id.clone(), id.clone()],
        }
        .validate()
        .unwrap();
        assert_eq!(ids, vec![id.clone()]);
        assert!(BulkApprove { ids: vec![] }.validate().is_err());
        assert!(BulkApprove { ids: vec![id; 101] }.validate().is_err());
        assert!(
            BulkApprove {
                ids: vec!["nope".into()]
            }
            .validate()
            .is_err()
        );
    }
}
