//! `koldly`: reads the configuration (flags and environment, `--help`) and
//! serves.

use clap::Parser;
use koldly::{Config, build_app, config::Cli, serve, shutdown_signal};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    return_big_blocks_to_the_kernel();
    // `--help`, `--version` and bad flags end here, with clap's message.
    let mut cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").as_deref() == Ok("json");
    koldly::logging::init(filter, json, std::io::stdout);
    if let Some(command) = cli.command.take() {
        use koldly::clock::Clock;
        let now = koldly::clock::SystemClock.now();
        return match koldly::admin::cli::run(&cli.database_url, &command, now).await {
            Ok(done) => {
                println!("{done}");
                std::process::ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("koldly: {err}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_cli(cli)?;
    tracing::info!(?config, "starting koldly");
    let addr = config.bind_addr;
    let (app, handles) = build_app(config).await?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    serve(listener, app, handles, shutdown_signal()).await?;
    Ok(())
}

/// glibc's malloc raises its mmap threshold to the size of the largest block
/// freed (up to 32 MiB), after which such blocks are carved from per-thread
/// arenas and kept there when freed: every argon2 hash (a 19 MiB buffer) left
/// one behind in the arena of the blocking thread that ran it, and the soak
/// (`tests/soak.rs`) saw the process grow from 0.3 to 1.2 GiB in a minute. A
/// fixed threshold of 1 MiB hands such blocks back to the kernel when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_big_blocks_to_the_kernel() {
    // SAFETY: mallopt only sets an allocator tunable; it takes the allocator's
    // own locks, so other threads allocating meanwhile are fine.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_big_blocks_to_the_kernel() {}
