//! PostgreSQL TLS follows the URL's `sslmode`, through the rustls build koldly ships.
//!
//! The machine's PostgreSQL serves TLS with a self-signed certificate: `require`
//! must get an encrypted session, and `verify-full` must refuse a certificate no
//! trusted root signed, never fall back to plain text.

mod support;

use sqlx::Connection;
use support::common::service_url;

fn postgres_url() -> Option<String> {
    let url = service_url("DATABASE_URL")?;
    if url.starts_with("postgres") {
        Some(url)
    } else {
        eprintln!("skipping: DATABASE_URL is not a PostgreSQL URL");
        None
    }
}

fn with_sslmode(url: &str, mode: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}sslmode={mode}")
}

#[tokio::test]
async fn sslmode_require_gets_an_encrypted_session() {
    let Some(url) = postgres_url() else { return };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut conn = match sqlx::PgConnection::connect(&with_sslmode(&url, "require")).await {
        Ok(conn) => conn,
        Err(err) => panic!("sslmode=require failed: {err}"),
    };
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(encrypted, "the session is not encrypted");
}

#[tokio::test]
async fn sslmode_verify_full_refuses_an_untrusted_certificate() {
    let Some(url) = postgres_url() else { return };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let err = match koldly::db::Db::connect(&with_sslmode(&url, "verify-full")).await {
        Ok(_) => panic!("verify-full accepted a self-signed certificate"),
        Err(err) => err.to_string().to_lowercase(),
    };
    assert!(
        err.contains("certificate") || err.contains("tls") || err.contains("ssl"),
        "{err}"
    );
}
