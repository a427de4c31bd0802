//! The product's routes over HTTP, each scenario on SQLite and PostgreSQL:
//! campaigns, ICP templates, onboarding, prospects, plan limits, tenancy, the
//! mail webhooks and the inbox.

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod billing;
mod campaigns;
mod client;
mod dashboard;
mod emails;
mod hostile_input;
mod icp_templates;
mod inbox;
mod inbox_migration;
mod inbox_send;
mod mailgun;
mod onboarding;
mod plan_limits;
mod prospects;
mod sending;
mod sending_providers;
mod sending_schedule;
mod stripe_webhooks;
mod suppressions;
mod tenancy;
mod tenancy_matrix;
mod webhooks;
