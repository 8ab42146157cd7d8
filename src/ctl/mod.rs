//! `state-manager ctl`: the operator CLI over the HTTP API.
//!
//! Each command is one request (or one stream) to the API. Answers print as human tables on
//! stdout, or with `--json` as the API's JSON exactly as received; failures print the server's
//! `detail` on stderr and end with the exit codes of [`exit`], a contract with scripts (see
//! `ctl --help`). ctl reaches the server only through the API and never prints the token.
//!
//! One file per command group; [`client`] owns the HTTP details and [`output`] the formatting.

mod answer;
mod args;
mod checkpoints;
mod client;
mod error;
mod lease;
mod logs;
mod output;
mod processes;
mod procset;
mod progress;
mod sse;
mod status;

use std::io::IsTerminal;

pub use args::{AFTER_HELP, CheckpointsCmd, Command, CtlArgs, Global, LOG};
pub use error::{CtlError, exit};

use client::Client;
use processes::Action;

/// Run one `ctl` command; returns the process exit code.
pub fn main(args: CtlArgs) -> i32 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match rt {
        Ok(rt) => rt.block_on(run(args)),
        Err(e) => {
            eprintln!("state-manager: cannot start the runtime: {e}");
            exit::SERVER
        }
    }
}

async fn run(args: CtlArgs) -> i32 {
    if let Command::Health = args.command {
        return status::health(&args.global).await;
    }
    let token = std::env::var("STATE_MANAGER_TOKEN").ok();
    let mut client = match Client::new(&args.global, token) {
        Ok(c) => c,
        Err(e) => return report(&e, false),
    };
    client.progress = !client.json && std::io::stderr().is_terminal();
    match dispatch(&client, &args.command).await {
        Ok(()) => exit::OK,
        Err(e) => report(&e, client.json),
    }
}

async fn dispatch(client: &Client, command: &Command) -> Result<(), CtlError> {
    match command {
        Command::Status => status::status(client).await,
        Command::Processes { pattern } => processes::list(client, pattern.as_deref()).await,
        Command::Start { pattern } => processes::act(client, Action::Start, pattern).await,
        Command::Stop { pattern } => processes::act(client, Action::Stop, pattern).await,
        Command::Restart { pattern } => processes::act(client, Action::Restart, pattern).await,
        Command::Logs { name, tail, follow } => logs::logs(client, name, *tail, *follow).await,
        Command::Checkpoint { label } => checkpoints::create(client, label.as_deref()).await,
        Command::Checkpoints { action } => checkpoints::checkpoints(client, action.as_ref()).await,
        Command::Restore { checkpoint } => checkpoints::restore(client, checkpoint).await,
        Command::ReleaseLease { no_checkpoint } => lease::release(client, *no_checkpoint).await,
        Command::AcquireLease => lease::acquire(client).await,
        Command::Health => Ok(()),
        Command::Apply { file, dry_run } => procset::apply(client, file, *dry_run).await,
        Command::Add { file } => procset::add(client, file).await,
        Command::Rm { name, force } => procset::remove(client, name, *force).await,
        Command::Scale { name, instances } => procset::scale(client, name, *instances).await,
    }
}

/// Print `e` (its detail on stderr; with `--json`, an API error's document on stdout too) and
/// return its exit code.
fn report(e: &CtlError, json: bool) -> i32 {
    if let (true, CtlError::Api { body, .. }) = (json, e) {
        output::emit(body);
    }
    eprintln!("state-manager: {e}");
    if let CtlError::Api { problems, .. } = e {
        for p in problems {
            eprintln!("  - {p}");
        }
    }
    e.exit_code()
}
