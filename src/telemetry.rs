//! Logging with `tracing`: human-readable on a terminal, JSON otherwise
//! (journald keeps the fields), filter from `FAILOVERD_LOG` or `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::EnvSource;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// Install the global subscriber. Logs go to stderr so that stdout stays
/// for command output (`check-config`, `status --output json`).
pub fn init(format: LogFormat, env: &EnvSource) {
    let spec = env
        .get("FAILOVERD_LOG")
        .or_else(|| env.get("RUST_LOG"))
        .cloned()
        .unwrap_or_else(|| "info".into());
    let (filter, bad) = match EnvFilter::try_new(&spec) {
        Ok(f) => (f, None),
        Err(e) => (
            EnvFilter::new("info"),
            Some(format!("ignoring log filter {spec:?}: {e}")),
        ),
    };
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.try_init()
    };
    if result.is_ok()
        && let Some(msg) = bad
    {
        tracing::warn!("{msg}");
    }
}
