//! Logging: readable text by default, one JSON object per line with `[log] format = "json"`.
//! Each job runs in a span carrying tenant, integration, job id and attempt, so every line a
//! job logs can be traced back to it.

use crate::config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. CLI commands other than `run` log warnings only, so their
/// output stays the answer to the question asked. Logs go to stderr (journald under systemd).
pub fn init(log: &LogConfig, daemon: bool) {
    let default = if daemon { log.filter.as_str() } else { "warn" };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}
