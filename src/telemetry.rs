//! Logs of state-manager itself: human-readable on a terminal, JSON lines otherwise (or as chosen),
//! to stderr, filtered by `--log-level` or `RUST_LOG`.

use std::io::IsTerminal;

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

/// How our own log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON lines otherwise.
    #[default]
    Auto,
    Text,
    Json,
}

/// The logging flags of every command.
#[derive(Debug, Args, Clone)]
pub struct LogArgs {
    /// Log level or filter (`info`, `debug`, `state_manager=debug`); RUST_LOG also works.
    #[arg(long, env = "STATE_MANAGER_LOG_LEVEL")]
    pub log_level: Option<String>,
    #[arg(long, env = "STATE_MANAGER_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
}

/// Install the global subscriber for `args` (once; later calls keep the first).
pub fn init(args: &LogArgs) {
    let filter = match &args.log_level {
        Some(level) => EnvFilter::try_new(level).unwrap_or_else(|e| {
            eprintln!("state-manager: ignoring --log-level {level:?}: {e}");
            EnvFilter::new("info")
        }),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let json = match args.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
