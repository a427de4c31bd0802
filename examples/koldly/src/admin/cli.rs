//! `koldly admin ...`: one-off administration of the configured database
//! (`DATABASE_URL`), run instead of serving.

use clap::Subcommand;

use crate::db::{self, Db, audit_log::AuditRecord};

/// A command run instead of serving.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Administration of the configured database.
    #[command(subcommand)]
    Admin(AdminCommand),
}

/// `koldly admin ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Makes the account with this address an admin (GET /api/admin/metrics).
    Grant {
        /// The account's address (case-insensitive).
        email: String,
    },
    /// Takes admin rights from the account with this address.
    Revoke {
        /// The account's address (case-insensitive).
        email: String,
    },
}

/// Runs `command` against `database_url` (migrating it first, as the server
/// does); returns what to print, or why it failed. The change is audited
/// (`admin.grant` / `admin.revoke`, actor `cli`).
pub async fn run(database_url: &str, command: &Command, now: i64) -> Result<String, String> {
    let Command::Admin(admin) = command;
    let (email, grant) = match admin {
        AdminCommand::Grant { email } => (email, true),
        AdminCommand::Revoke { email } => (email, false),
    };
    let database = Db::connect(database_url)
        .await
        .map_err(|e| format!("database {}: {e}", crate::config::redact_url(database_url)))?;
    let result = async {
        let Some(user_id) = db::admin::set_admin(&database.pool, email, grant, now)
            .await
            .map_err(|e| format!("database error: {e}"))?
        else {
            return Err(format!("no account with the address {email}"));
        };
        let action = if grant { "admin.grant" } else { "admin.revoke" };
        let record = AuditRecord {
            occurred_at: now,
            action: action.to_owned(),
            outcome: "success".to_owned(),
            actor: Some("cli".to_owned()),
            target_type: Some("user".to_owned()),
            target_id: Some(user_id.clone()),
            extra: "{}".to_owned(),
            ..AuditRecord::default()
        };
        db::audit_log::insert_all(&database.pool, &[record])
            .await
            .map_err(|e| format!("database error: {e}"))?;
        Ok(if grant {
            format!("{email} (user {user_id}) is an admin")
        } else {
            format!("{email} (user {user_id}) is no longer an admin")
        })
    }
    .await;
    database.pool.close().await;
    result
}
