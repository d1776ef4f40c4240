//! One module per subcommand. Each exposes its clap arguments and a `run`
//! function returning `anyhow::Result<()>`.

pub mod agent;
mod commands;
mod config;
pub mod forecast;
pub mod import;
pub mod model;
pub mod serve;
pub mod simulate;
pub mod store;

/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "smart-energy-data";

/// Sends logs to stderr, filtered by `RUST_LOG`, else by `default_level`:
/// `info` for long-running services, `warn` for commands that print a report.
pub fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colour codes only on a terminal, so redirected logs stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
}

/// Parses a duration such as `5s`, `500ms` or `2m`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let span: jiff::Span = text
        .parse()
        .map_err(|_| format!("invalid duration {text:?}; use a number with a unit, such as 5s, 500ms or 2m"))?;
    let signed = jiff::SignedDuration::try_from(span).map_err(|error| format!("invalid duration {text:?}: {error}"))?;
    std::time::Duration::try_from(signed)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| format!("invalid duration {text:?}; it must be greater than zero"))
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the program");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
