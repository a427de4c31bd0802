//! The process's tracing subscriber: `main` installs it, and so do the load
//! benches, so that what they measure is the stack as koldly runs it.

use tracing_subscriber::{EnvFilter, fmt::MakeWriter};

/// Installs the global subscriber: one line per event, filtered by `filter`,
/// as JSON when `json`, written by `writer`.
///
/// Panics if a global subscriber is already installed.
pub fn init<W>(filter: EnvFilter, json: bool, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
