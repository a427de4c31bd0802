//! The product's routes over HTTP, each scenario on SQLite and PostgreSQL:
//! campaigns, ICP templates, onboarding, prospects, plan limits, tenancy, the
//! mail webhooks and the inbox.

#[path = "../support/mod.rs"]
mod support;

mod campaigns;
mod client;
mod emails;
mod hostile_input;
mod icp_templates;
mod inbox;
mod inbox_migration;
mod mailgun;
mod onboarding;
mod plan_limits;
mod prospects;
mod sending;
mod sending_providers;
mod suppressions;
mod tenancy;
mod webhooks;
