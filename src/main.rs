//! The `state-manager` binary: parse the command line, set up logs, hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use state_manager::cli::{CheckArgs, Cli, Cmd};
use state_manager::{app, config, proc, single, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Cmd::Serve(cli.serve));
    telemetry::init(command.log());
    let code = match command {
        Cmd::Check(args) => check(&args),
        Cmd::Serve(args) => {
            proc::init();
            let settings = app::Settings {
                config_path: args.config_path(),
                data_dir: args.data_dir,
                subreaper: args.subreaper,
            };
            block_on(|| async {
                let shutdown = app::termination()?;
                app::serve(settings, shutdown)
                    .await
                    .map_err(anyhow::Error::from)
            })
        }
        Cmd::Run(args) => {
            proc::init();
            block_on(|| async {
                let shutdown = app::termination()?;
                single::run(args, shutdown)
                    .await
                    .map_err(anyhow::Error::from)
            })
        }
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn block_on<F, Fut>(f: F) -> i32
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<i32>>,
{
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("state-manager: cannot start the runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(f()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("state-manager: {e:#}");
            1
        }
    }
}

fn check(args: &CheckArgs) -> i32 {
    match config::parse_file(&args.config) {
        Ok(c) => {
            println!("{}: ok ({} stacks)", args.config.display(), c.stacks.len());
            0
        }
        Err(e) => {
            eprintln!("{}: {e}", args.config.display());
            2
        }
    }
}
