//! `rtet-relay`: parses flags, builds the runtime with the threads they ask
//! for, starts tracing, binds, and runs the server until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::process::ExitCode;

use tokio::net::{TcpListener, TcpSocket};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let config = match rtet_relay::Config::from_args(std::env::args_os()) {
        Ok(c) => c,
        // clap prints its errors (and --help / --version) itself, with its exit code.
        Err(rtet_relay::ConfigError::Cli(e)) => e.exit(),
        Err(e) => {
            eprintln!("rtet-relay: {e}");
            return ExitCode::from(2);
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all().thread_name(THREAD_NAME);
    if let Some(n) = config.worker_threads {
        runtime.worker_threads(n);
    }
    match runtime.build() {
        Ok(runtime) => runtime.block_on(serve(config)),
        Err(e) => {
            eprintln!("rtet-relay: cannot start the runtime: {e}");
            ExitCode::from(1)
        }
    }
}

async fn serve(config: rtet_relay::Config) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let shutdown = shutdown_signal();
    let listener = match bind(config.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rtet-relay: cannot listen on {}: {e}", config.listen);
            return ExitCode::from(1);
        }
    };
    match rtet_relay::run(listener, config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rtet-relay: {e}");
            ExitCode::from(1)
        }
    }
}

/// The runtime's threads, as `ps -L` and `top -H` show them.
const THREAD_NAME: &str = "rtet-worker";

/// Pending connections the kernel queues before the relay accepts them.
/// `TcpListener::bind` uses 128 (the standard library's value); a burst of
/// browsers reconnecting after a restart overflows that, and each dropped SYN
/// costs its client a one-second retransmit. Linux caps it at
/// `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as `TcpListener::bind` does).
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed at once, before
/// the relay says it listens, so a signal sent right after that stops it
/// gracefully instead of killing it.
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        match (term, interrupt) {
            (Ok(mut term), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = interrupt.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
