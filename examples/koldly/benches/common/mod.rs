//! What the koldly benches share.

use tracing_subscriber::EnvFilter;

/// The `--log FILTER` argument: the subscriber koldly's `main` installs, with
/// this filter (default `warn`) and every line written to nowhere, so the
/// stack is measured as koldly runs it; `--log none` installs none. Returns the
/// filter, for the report.
///
/// `warn` rather than `main`'s default `info`: at `info` koldly logs a line per
/// request, which measures the log formatter, not the layers (`--log info`
/// shows what it costs). And no subscriber at all is not how koldly runs:
/// without one, tracing hands every span and event to the `log` crate
/// instead (sqlx switches that fallback on), a cost no koldly process pays.
pub fn install_subscriber(args: &[String]) -> String {
    let filter = args
        .iter()
        .position(|a| a == "--log")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "warn".to_owned());
    if filter != "none" {
        let env_filter = EnvFilter::try_new(&filter).unwrap_or_else(|err| {
            eprintln!("--log {filter}: {err}");
            std::process::exit(2)
        });
        koldly::logging::init(env_filter, false, std::io::sink);
    }
    filter
}
