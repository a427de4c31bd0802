//! koldly: steadfast's reference server, a Rust rebuild of the Koldly API (an
//! AI cold-email outreach SaaS), wired with every steadfast layer.
//!
//! [`build_app`] connects and migrates the database and returns the router
//! with its middleware stack; [`serve`] runs it until a shutdown signal, then
//! lets in-flight requests finish within a bound. `main.rs` only reads the
//! configuration and calls both; the integration tests do the same on an
//! ephemeral port.

pub mod admin;
pub mod ai;
pub mod analytics;
pub mod app;
pub mod audit;
pub mod auth;
pub mod background;
pub mod billing;
pub mod campaigns;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod db;
pub mod emails;
pub mod error;
// The fuzz targets' bodies, for `fuzz/` and the corpus replay test.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod http_client;
pub mod icp;
pub mod inbox;
pub mod jobs;
pub mod keyed;
pub mod logging;
pub mod mail;
pub mod onboarding;
pub mod openapi;
pub mod pagination;
pub mod plans;
pub mod prospects;
pub mod request_meta;
pub mod sending;
pub mod state;
pub mod text_input;
pub mod validation;
pub mod webhooks;

use std::{future::Future, net::SocketAddr, sync::Arc};

pub use app::{App, AppHandles, StartError, build_app};
pub use config::Config;
use tokio::{net::TcpListener, sync::Notify};

/// Serves `app` on `listener` until `shutdown` completes, then stops
/// accepting, gives in-flight requests `config.shutdown_grace` to finish, and
/// closes the database pool.
pub async fn serve(
    listener: TcpListener,
    app: impl App,
    handles: AppHandles,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = handles.state.config.shutdown_grace;
    let signalled = Arc::new(Notify::new());
    let notify = signalled.clone();
    let server = axum::serve(
        listener,
        axum::ServiceExt::into_make_service_with_connect_info::<SocketAddr>(app),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!(
            "shutdown signal received: no new connections; finishing in-flight requests"
        );
        notify.notify_one();
    });
    let result = tokio::select! {
        res = server.into_future() => res,
        () = async { signalled.notified().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "in-flight requests did not finish in time; closing them");
            Ok(())
        }
    };
    handles.close().await;
    tracing::info!("stopped");
    result
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
