//! Action names from the [OWASP logging vocabulary], in dotted form.
//!
//! Use them where one fits, and dotted application names
//! (`campaign.create`) for the rest.
//!
//! ```
//! use steadfast::audit::{AuditLayer, Auditor, MemorySink, actions};
//! use http::Method;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let layer = AuditLayer::new(Auditor::builder().build(MemorySink::new()))
//!     .route(Method::POST, "/signup", actions::AUTHN_SIGNUP)
//!     .route(Method::POST, "/password", actions::AUTHN_PASSWORD_CHANGE);
//! # let _ = layer;
//! # }
//! ```
//!
//! [OWASP logging vocabulary]: https://cheatsheetseries.owasp.org/cheatsheets/Logging_Vocabulary_Cheat_Sheet.html

/// A user authenticated.
pub const AUTHN_LOGIN_SUCCESS: &str = "authn.login.success";
/// An authentication attempt failed.
pub const AUTHN_LOGIN_FAIL: &str = "authn.login.fail";
/// An account was locked after failed attempts.
pub const AUTHN_LOGIN_LOCK: &str = "authn.login.lock";
/// A user signed up.
pub const AUTHN_SIGNUP: &str = "authn.signup";
/// A user changed their password.
pub const AUTHN_PASSWORD_CHANGE: &str = "authn.password.change";
/// A password reset was requested.
pub const AUTHN_PASSWORD_RESET_REQUEST: &str = "authn.password.reset.request";
/// An access token was created.
pub const AUTHN_TOKEN_CREATED: &str = "authn.token.created";
/// An access token was revoked.
pub const AUTHN_TOKEN_REVOKED: &str = "authn.token.revoked";
/// A request was refused for lack of permission.
pub const AUTHZ_FAIL: &str = "authz.fail";
/// A user's permissions changed.
pub const AUTHZ_CHANGE: &str = "authz.change";
/// A session was created.
pub const SESSION_CREATED: &str = "session.created";
/// A session expired or was ended.
pub const SESSION_EXPIRED: &str = "session.expired";
/// A user was created.
pub const USER_CREATED: &str = "user.created";
/// A user was deleted.
pub const USER_DELETED: &str = "user.deleted";
