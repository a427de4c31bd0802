//! The product's routes over HTTP, each scenario on SQLite and PostgreSQL:
//! campaigns, ICP templates, onboarding, prospects, plan limits and tenancy.

#[path = "../support/mod.rs"]
mod support;

mod campaigns;
mod client;
mod emails;
mod hostile_input;
mod icp_templates;
mod onboarding;
mod plan_limits;
mod prospects;
mod suppressions;
mod tenancy;
