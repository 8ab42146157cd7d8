//! The command line. Every flag can also come from a `STATE_MANAGER_*` environment variable;
//! a flag given on the command line wins over the environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::auth::Scope;
use crate::config::{Dur, OnExit};
use crate::datadir::DataDir;
use crate::single::Entrypoint;
use crate::telemetry::LogArgs;

#[derive(Debug, Parser)]
#[command(
    name = "state-manager",
    version,
    about = "A supervisor that keeps processes and their state safe"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Cmd>,
    /// With no subcommand, `serve` with these arguments.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the service: supervise the configured stacks and serve the HTTP API.
    Serve(ServeArgs),
    /// Supervise one command (container ENTRYPOINT mode); exit with its exit code.
    Run(RunArgs),
    /// Validate a config file and print every problem; exit 0 if valid, 2 if not.
    Check(CheckArgs),
    /// Print a bearer token for the HTTP API, signed with STATE_MANAGER_JWT_SECRET(_FILE).
    Token(TokenArgs),
    /// Operate a running state-manager over its HTTP API (status, processes, logs, checkpoints,
    /// lease).
    Ctl(crate::ctl::CtlArgs),
    /// Restore the replicated state database from storage into a new file (optionally as it
    /// was at a point in time), without touching a running service.
    RestoreDb(RestoreDbArgs),
    /// The fence process `serve` starts beside itself (see `lease::watchdog`); not run by hand.
    #[command(hide = true)]
    Fence(FenceArgs),
}

#[derive(Debug, Args, Clone)]
pub struct FenceArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// The page shared with the server.
    #[arg(long)]
    pub page: PathBuf,
    /// The server's pid: its children are what the fence kills.
    #[arg(long)]
    pub server: u32,
}

#[derive(Debug, Args, Clone)]
pub struct RestoreDbArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// The file to create; it must not exist.
    #[arg(long)]
    pub to: PathBuf,
    /// Point in time to restore to, RFC 3339 (e.g. 2026-11-23T12:00:00Z); default: the latest.
    #[arg(long)]
    pub at: Option<String>,
    /// The config whose `storage` holds the database. Default `<data-dir>/config.json`.
    #[arg(long, env = "STATE_MANAGER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (the local storage backend lives under it).
    #[arg(long, env = "STATE_MANAGER_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// Config file. Missing: the service starts unconfigured. Default `<data-dir>/config.json`.
    #[arg(long, env = "STATE_MANAGER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for state-manager's own state (database, local storage, lock).
    #[arg(long, env = "STATE_MANAGER_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Address of the HTTP API.
    #[arg(long, env = "STATE_MANAGER_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Adopt and reap orphaned descendants (automatic when running as PID 1).
    #[arg(long, env = "STATE_MANAGER_SUBREAPER", value_parser = BoolishValueParser::new())]
    pub subreaper: bool,
    /// Serve the API without authentication (anyone who can reach it is admin). Without it, a
    /// JWT key must be set: STATE_MANAGER_JWT_SECRET, STATE_MANAGER_JWT_SECRET_FILE or
    /// STATE_MANAGER_JWT_PUBLIC_KEY_FILE.
    #[arg(long, env = "STATE_MANAGER_INSECURE_NO_AUTH", value_parser = BoolishValueParser::new())]
    pub insecure_no_auth: bool,
    /// How often the CPU and memory of each process group are sampled from /proc (`0s`: never).
    #[arg(long, env = "STATE_MANAGER_USAGE_INTERVAL", default_value = "5s")]
    pub usage_interval: Dur,
}

#[derive(Debug, Args, Clone)]
pub struct TokenArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// What the token may do: `read` (every GET) or `admin` (also every change).
    #[arg(long, value_enum, default_value = "read")]
    pub scope: Scope,
    /// How long the token is valid.
    #[arg(long, default_value = "1h")]
    pub ttl: Dur,
    /// Who the token is for (the `sub` claim, logged with every change it makes).
    #[arg(long, default_value = "operator")]
    pub sub: String,
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// Restart the command gracefully when this file changes (repeatable).
    #[arg(long = "watch", value_name = "FILE")]
    pub watch: Vec<PathBuf>,
    /// Time between the stop signal and SIGKILL.
    #[arg(long, env = "STATE_MANAGER_STOP_TIMEOUT", default_value = "10s")]
    pub stop_timeout: Dur,
    /// Delay before a restart (with `--on-exit restart`).
    #[arg(long, env = "STATE_MANAGER_RESTART_DELAY", default_value = "1s")]
    pub restart_delay: Dur,
    /// Signal that asks the command to stop.
    #[arg(long, env = "STATE_MANAGER_STOP_SIGNAL", default_value = "SIGTERM")]
    pub stop_signal: String,
    /// What to do when the command exits on its own.
    #[arg(
        long,
        env = "STATE_MANAGER_ON_EXIT",
        value_enum,
        default_value = "shutdown"
    )]
    pub on_exit: OnExitArg,
    /// Adopt and reap orphaned descendants (automatic when running as PID 1).
    #[arg(long, env = "STATE_MANAGER_SUBREAPER", value_parser = BoolishValueParser::new())]
    pub subreaper: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

impl RunArgs {
    /// What `single::run` supervises.
    pub fn entrypoint(&self) -> Entrypoint {
        Entrypoint {
            command: self.command.clone(),
            watch: self.watch.clone(),
            stop_timeout: self.stop_timeout.get(),
            restart_delay: self.restart_delay.get(),
            stop_signal: self.stop_signal.clone(),
            on_exit: self.on_exit.into(),
            subreaper: self.subreaper,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OnExitArg {
    Shutdown,
    Restart,
    Ignore,
}

impl From<OnExitArg> for OnExit {
    fn from(a: OnExitArg) -> OnExit {
        match a {
            OnExitArg::Shutdown => OnExit::Shutdown,
            OnExitArg::Restart => OnExit::Restart,
            OnExitArg::Ignore => OnExit::Ignore,
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct CheckArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// The config file to validate.
    #[arg(long, env = "STATE_MANAGER_CONFIG")]
    pub config: PathBuf,
    /// Also try the storage end to end under the key prefix (list, put-if-absent, conditional
    /// overwrite, read back, delete of a probe object), printing each step; exit 1 if one fails.
    #[arg(long)]
    pub storage: bool,
}

impl Cmd {
    /// Logging settings of whichever command runs.
    pub fn log(&self) -> &LogArgs {
        match self {
            Cmd::Serve(a) => &a.log,
            Cmd::Run(a) => &a.log,
            Cmd::Check(a) => &a.log,
            Cmd::Token(a) => &a.log,
            Cmd::Ctl(_) => &crate::ctl::LOG,
            Cmd::RestoreDb(a) => &a.log,
            Cmd::Fence(a) => &a.log,
        }
    }
}

impl RestoreDbArgs {
    /// The config path: `--config`, else the data directory's.
    pub fn config_path(&self) -> PathBuf {
        config_path(self.config.as_ref(), &self.data_dir)
    }
}

impl ServeArgs {
    /// The config path: `--config`, else the data directory's.
    pub fn config_path(&self) -> PathBuf {
        config_path(self.config.as_ref(), &self.data_dir)
    }
}

fn config_path(given: Option<&PathBuf>, data_dir: &Path) -> PathBuf {
    given
        .cloned()
        .unwrap_or_else(|| DataDir::new(data_dir).config_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_subcommand_means_serve() {
        let cli = Cli::try_parse_from(["state-manager", "--data-dir", "/tmp/x"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(cli.serve.listen.port(), 8080);
    }

    #[test]
    fn run_takes_the_command_after_dashes() {
        let cli = Cli::try_parse_from([
            "state-manager",
            "run",
            "--watch",
            "a",
            "--watch",
            "b",
            "--",
            "sh",
            "-c",
            "exit 3",
        ])
        .unwrap();
        let Some(Cmd::Run(r)) = cli.command else {
            panic!()
        };
        assert_eq!(r.command, ["sh", "-c", "exit 3"]);
        assert_eq!(r.watch.len(), 2);
        assert_eq!(r.stop_timeout, Dur::secs(10));
    }

    #[test]
    fn token_defaults_to_read_for_an_hour() {
        let cli = Cli::try_parse_from(["state-manager", "token"]).unwrap();
        let Some(Cmd::Token(t)) = cli.command else {
            panic!()
        };
        assert_eq!(t.scope, Scope::Read);
        assert_eq!(t.ttl, Dur::secs(3600));
    }

    #[test]
    fn bad_duration_is_a_clear_error() {
        let err =
            Cli::try_parse_from(["state-manager", "run", "--stop-timeout", "soon", "--", "x"])
                .unwrap_err();
        assert!(err.to_string().contains("\"90s\""), "{err}");
    }
}
