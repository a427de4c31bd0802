//! What campaign requests may carry, and their rules.

use serde::Deserialize;

use crate::{
    db::campaigns::{CampaignPatch, NewCampaign},
    validation::{FieldErrors, nullable},
};

/// Longest campaign name.
pub const NAME_MAX: usize = 200;
/// Longest description or product description.
pub const TEXT_MAX: usize = 5000;
/// Longest industry.
pub const INDUSTRY_MAX: usize = 200;
/// Allowed emails per day.
pub const DAILY_SEND_LIMIT: std::ops::RangeInclusive<i64> = 1..=1000;
/// The daily send limit of a campaign that does not say.
pub const DEFAULT_DAILY_SEND_LIMIT: i64 = 50;

/// A campaign's lifecycle status. Archiving is separate (`PUT .../archive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleStatus {
    /// Being prepared.
    Draft,
    /// Running.
    Active,
    /// Stopped for now.
    Paused,
    /// Over.
    Completed,
}

impl LifecycleStatus {
    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Completed => "completed",
        }
    }
}

/// `POST /api/campaigns`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaign {
    // The document states the rules `validate` enforces (NAME_MAX,
    // DAILY_SEND_LIMIT): schemathesis found it accepting what was refused.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    product_description: Option<String>,
    #[serde(default)]
    target_industry: Option<String>,
    #[serde(default)]
    status: Option<LifecycleStatus>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    daily_send_limit: Option<i64>,
    #[serde(default)]
    icp_template_id: Option<String>,
}

impl CreateCampaign {
    /// The validated campaign, or a 422 naming every broken rule.
    pub fn validate(self) -> Result<NewCampaign, crate::error::ApiError> {
        let mut errors = FieldErrors::new();
        let new = NewCampaign {
            name: errors.required_text("name", &self.name, NAME_MAX),
            description: errors.optional_text("description", self.description.as_deref(), TEXT_MAX),
            product_description: errors.optional_text(
                "product_description",
                self.product_description.as_deref(),
                TEXT_MAX,
            ),
            target_industry: errors.optional_text(
                "target_industry",
                self.target_industry.as_deref(),
                INDUSTRY_MAX,
            ),
            status: self
                .status
                .unwrap_or(LifecycleStatus::Draft)
                .as_str()
                .to_owned(),
            daily_send_limit: self.daily_send_limit.unwrap_or(DEFAULT_DAILY_SEND_LIMIT),
            icp_template_id: errors.optional_text(
                "icp_template_id",
                self.icp_template_id.as_deref(),
                64,
            ),
        };
        errors.in_range("daily_send_limit", new.daily_send_limit, DAILY_SEND_LIMIT);
        errors.finish()?;
        Ok(new)
    }
}

/// `PATCH /api/campaigns/{id}`: absent fields stay, `null` clears a nullable one.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCampaign {
    /// Absent keeps the name; it cannot be cleared (`null` is refused).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = String, min_length = 1, max_length = 200, pattern = "\\S")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    product_description: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    target_industry: Option<Option<String>>,
    #[serde(default)]
    status: Option<LifecycleStatus>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    daily_send_limit: Option<i64>,
}

impl UpdateCampaign {
    /// The validated patch, or a 422 naming every broken rule.
    pub fn validate(self) -> Result<CampaignPatch, crate::error::ApiError> {
        let mut errors = FieldErrors::new();
        let name = match self.name {
            None => None,
            Some(None) => {
                errors.add("name", "must not be null");
                None
            }
            Some(Some(name)) => Some(errors.required_text("name", &name, NAME_MAX)),
        };
        let mut clearable = |field: &str, value: Option<Option<String>>, max: usize| {
            value.map(|v| errors.optional_text(field, v.as_deref(), max))
        };
        let patch = CampaignPatch {
            name,
            description: clearable("description", self.description, TEXT_MAX),
            product_description: clearable(
                "product_description",
                self.product_description,
                TEXT_MAX,
            ),
            target_industry: clearable("target_industry", self.target_industry, INDUSTRY_MAX),
            status: self.status.map(|s| s.as_str().to_owned()),
            daily_send_limit: self.daily_send_limit,
        };
        if let Some(limit) = patch.daily_send_limit {
            errors.in_range("daily_send_limit", limit, DAILY_SEND_LIMIT);
        }
        errors.finish()?;
        Ok(patch)
    }
}

/// `POST /api/campaigns/{id}/duplicate` (the body is optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DuplicateCampaign {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: Option<String>,
}

impl DuplicateCampaign {
    /// The copy's name, if given; a 422 when it breaks the name's rules.
    pub fn validate(self) -> Result<Option<String>, crate::error::ApiError> {
        let mut errors = FieldErrors::new();
        let name = self
            .name
            .map(|name| errors.required_text("name", &name, NAME_MAX));
        errors.finish()?;
        Ok(name)
    }
}
