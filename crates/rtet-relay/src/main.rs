//! `rtet-relay`: parses flags, starts tracing, binds, and runs the server
//! until SIGTERM or SIGINT.

use std::process::ExitCode;

use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match rtet_relay::Config::from_args(std::env::args_os()) {
        Ok(c) => c,
        Err(e) => {
            // clap errors (and --help / --version) print themselves with the right exit code.
            if let Some(clap_err) = e.downcast_ref::<clap::Error>() {
                clap_err.exit();
            }
            eprintln!("rtet-relay: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let listener = match TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rtet-relay: cannot listen on {}: {e}", config.listen);
            return ExitCode::from(1);
        }
    };
    match rtet_relay::run(listener, config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rtet-relay: {e}");
            ExitCode::from(1)
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
