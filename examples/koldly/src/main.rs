//! `koldly`: reads the configuration (flags and environment, `--help`) and
//! serves.

use clap::Parser;
use koldly::{Config, build_app, config::Cli, serve, shutdown_signal};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
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
