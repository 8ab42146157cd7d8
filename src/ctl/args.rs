//! The command line of `state-manager ctl`: flags shared by every command (usable before or
//! after the command's name) and one variant per command.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::config::Dur;
use crate::telemetry::{LogArgs, LogFormat};

/// Printed under `ctl --help`: the contract scripts rely on.
pub const AFTER_HELP: &str = "\
Environment:
  STATE_MANAGER_URL         the API's base URL (--url)
  STATE_MANAGER_TOKEN       the bearer token (mint one with `state-manager token`)
  STATE_MANAGER_TOKEN_FILE  a file holding the token (--token-file; wins over STATE_MANAGER_TOKEN)

Exit codes:
  0  success
  1  the server answered with an error (its `detail` is printed); `health`: not healthy or unreachable
  2  usage error: bad arguments, unreadable token file, invalid --url
  3  cannot reach the server, or no answer within --timeout
  4  authentication refused (401: missing, invalid or expired token) or permission refused
     (403: the token lacks the `admin` scope)
  5  not found (404): no such process, checkpoint or endpoint
  6  conflict (409): busy, or not possible in the current state (e.g. the lease is not held,
     a reload that changes storage or node_id)";

/// The logging of `ctl` itself: `RUST_LOG` if set, else `info` (ctl logs nothing at that level;
/// `RUST_LOG=debug` shows the HTTP exchanges).
pub static LOG: LogArgs = LogArgs {
    log_level: None,
    log_format: LogFormat::Text,
};

/// `state-manager ctl`.
#[derive(Debug, Args, Clone)]
#[command(after_help = AFTER_HELP)]
pub struct CtlArgs {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags of every `ctl` command.
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Base URL of the state-manager API.
    #[arg(
        long,
        global = true,
        env = "STATE_MANAGER_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// Read the bearer token from this file instead of STATE_MANAGER_TOKEN.
    #[arg(
        long,
        global = true,
        env = "STATE_MANAGER_TOKEN_FILE",
        value_name = "FILE"
    )]
    pub token_file: Option<PathBuf>,
    /// Print the API's JSON answer as is (one document; `logs --follow`: one per line), and on
    /// an error the problem document too.
    #[arg(long, global = true)]
    pub json: bool,
    /// How long to wait for the answer. Default 30s; 15m for start, stop, restart, checkpoint,
    /// restore, the lease commands and the process-set changes; 5s for health. For `stop` and
    /// `rm`, also the time the processes get between the stop signal and SIGKILL.
    #[arg(long, global = true, value_name = "DUR")]
    pub timeout: Option<Dur>,
}

#[derive(Debug, Subcommand, Clone)]
pub enum Command {
    /// The service's status: processes by state, role, lease, replication, last checkpoint.
    Status,
    /// List the processes (those matching PATTERN, a glob such as `web-*`, if given).
    Processes {
        /// A process name or a glob (`web-*`, `web-[12]`); quote it so the shell leaves it alone.
        pattern: Option<String>,
    },
    /// Start the processes matching PATTERN (after their dependencies).
    Start {
        /// A process name or a glob (`web-*`, `web-[12]`); quote it so the shell leaves it alone.
        pattern: String,
    },
    /// Stop the processes matching PATTERN; returns once they are down (see --timeout).
    Stop {
        /// A process name or a glob (`web-*`, `web-[12]`); quote it so the shell leaves it alone.
        pattern: String,
    },
    /// Restart the processes matching PATTERN; returns once they are started again.
    Restart {
        /// A process name or a glob (`web-*`, `web-[12]`); quote it so the shell leaves it alone.
        pattern: String,
    },
    /// The last lines a process wrote; with --follow, then every new line until interrupted.
    Logs {
        /// The process (e.g. `web-1`).
        name: String,
        /// How many past lines (the server's default is 100, at most 1000).
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        /// Keep printing new lines as they come.
        #[arg(long, short)]
        follow: bool,
    },
    /// Take a checkpoint of the environment directory now.
    Checkpoint {
        /// A label stored with the checkpoint (e.g. `before-upgrade`).
        #[arg(long)]
        label: Option<String>,
    },
    /// List the checkpoints, or show or delete one.
    Checkpoints {
        #[command(subcommand)]
        action: Option<CheckpointsCmd>,
    },
    /// Restore the environment directory from a checkpoint (an id, or `latest`); the server
    /// stops the processes, restores, restarts them and keeps an undo checkpoint.
    Restore {
        /// The checkpoint's id, or `latest` for the newest one.
        #[arg(value_name = "ID|latest")]
        checkpoint: String,
    },
    /// Stop the stacks, take a final checkpoint, flush replication and release the lease; this
    /// node becomes a standby.
    ReleaseLease {
        /// Release without taking a final checkpoint.
        #[arg(long)]
        no_checkpoint: bool,
    },
    /// Acquire the lease on this node (after a release) and start the stacks.
    AcquireLease,
    /// Liveness probe (GET /healthz, no token): exit 0 if the server answers, 1 otherwise.
    Health,
    /// Reload the config from FILE (PUT /config) and print the plan: `+ name` added, `- name`
    /// removed, `~ name: fields` changed, `= N unchanged`.
    Apply {
        /// The whole new config (JSON).
        #[arg(long, short = 'f', value_name = "FILE")]
        file: PathBuf,
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Add a stack from SPEC.json (POST /processes): a process as in the config's `stacks`.
    Add {
        /// The process spec (JSON).
        #[arg(long, short = 'f', value_name = "SPEC.json")]
        file: PathBuf,
    },
    /// Stop a stack's processes and remove it (see --timeout).
    Rm {
        /// The stack's name (`web` for `web-1`, `web-2`).
        name: String,
        /// Remove it although other stacks depend on it.
        #[arg(long)]
        force: bool,
    },
    /// Give a stack N instances: start `name-(k+1)…` or stop the highest numbered.
    Scale {
        /// The stack's name.
        name: String,
        /// How many instances (1 to 10000).
        #[arg(value_parser = clap::value_parser!(u32).range(1..=10_000))]
        instances: u32,
    },
}

#[derive(Debug, Subcommand, Clone)]
pub enum CheckpointsCmd {
    /// List the checkpoints, newest first (the default).
    List,
    /// Show one checkpoint.
    Show {
        /// The checkpoint's id.
        id: String,
    },
    /// Delete one checkpoint.
    Delete {
        /// The checkpoint's id.
        id: String,
    },
}
