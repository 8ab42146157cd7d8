//! The `state-manager` binary: parse the command line, set up logs, hand over to the library.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use state_manager::auth::{Auth, AuthError, Keys};
use state_manager::cli::{CheckArgs, Cli, Cmd, ServeArgs, TokenArgs};
use state_manager::supervisor::usage;
use state_manager::{app, config, ctl, lease, memory, objstore, proc, signals, single, telemetry};

fn main() -> ExitCode {
    // The fence process `serve` starts beside itself runs before the command-line parser and
    // the log set-up: it needs neither, and every page of code it touches is memory it holds.
    if let Some((page, server)) = fence_args() {
        return ExitCode::from(lease::watchdog::run(&page, server).clamp(0, 255) as u8);
    }
    memory::tune_malloc();
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Cmd::Serve(cli.serve));
    telemetry::init(command.log());
    let code = match command {
        Cmd::Check(args) => check(&args),
        Cmd::Token(args) => token(&args),
        Cmd::Ctl(args) => ctl::main(args),
        Cmd::RestoreDb(args) => block_on(|| async {
            let at = args.at.as_deref();
            let info = app::restore_db(&args.config_path(), &args.data_dir, &args.to, at).await?;
            println!("{}", serde_json::to_string_pretty(&info)?);
            Ok(0)
        }),
        Cmd::Fence(args) => lease::watchdog::run(&args.page, args.server),
        Cmd::Serve(args) => match proc::init() {
            Ok(()) => block_on(|| serve(args)),
            Err(e) => fail(e),
        },
        Cmd::Run(args) => match proc::init() {
            Ok(()) => block_on(|| async {
                let shutdown = signals::termination()?;
                single::run(args.entrypoint(), shutdown)
                    .await
                    .map_err(anyhow::Error::from)
            }),
            Err(e) => fail(e),
        },
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn fail(e: impl std::fmt::Display) -> i32 {
    eprintln!("state-manager: {e}");
    1
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

async fn serve(args: ServeArgs) -> anyhow::Result<i32> {
    let auth = Auth::from_env(args.insecure_no_auth)?;
    let usage_interval = Some(args.usage_interval.get()).filter(|d| !d.is_zero());
    if let Some(d) = usage_interval.filter(|&d| d < usage::MIN_INTERVAL) {
        anyhow::bail!(
            "--usage-interval {} is too short: give at least {}, or 0s to turn sampling off",
            humantime::format_duration(d),
            humantime::format_duration(usage::MIN_INTERVAL)
        );
    }
    let settings = app::Settings {
        config_path: args.config_path(),
        data_dir: args.data_dir,
        subreaper: args.subreaper,
        auth,
        usage_interval,
        limits: Default::default(),
        fence_program: Some("/proc/self/exe".into()),
    };
    let shutdown = signals::termination()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    Ok(app::serve(settings, listener, shutdown).await?)
}

fn token(args: &TokenArgs) -> i32 {
    let minted = Keys::from_env()
        .and_then(|keys| keys.ok_or(AuthError::NoKey))
        .and_then(|keys| keys.mint(&args.sub, args.scope, args.ttl.get()));
    match minted {
        Ok(t) => {
            println!("{t}");
            0
        }
        Err(e) => {
            eprintln!("state-manager: {e}");
            1
        }
    }
}

/// Exit 0 if the config is valid (and, with `--storage`, every storage step passed), 2 for an
/// invalid config, 1 for a storage step that failed.
fn check(args: &CheckArgs) -> i32 {
    let c = match config::parse_file(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", args.config.display());
            return 2;
        }
    };
    println!("{}: ok ({} stacks)", args.config.display(), c.stacks.len());
    if !args.storage {
        return 0;
    }
    let Some(storage) = c.storage else {
        println!(
            "storage: no storage section, so the local directory <data_dir>/objects; nothing to try"
        );
        return 0;
    };
    block_on(|| async move {
        // The data directory is only used without a storage section, handled above.
        let store = match objstore::open(Some(&storage), std::path::Path::new("/")).await {
            Ok(s) => s,
            Err(e) => {
                println!("storage: cannot open: {e}");
                return Ok(1);
            }
        };
        println!("storage: trying {} step by step", store.describe());
        let steps = objstore::preflight::run(&store, |s| match &s.problem {
            None => println!("  ok    {}", s.name),
            Some((what, fix)) => println!("  FAIL  {}: {what}\n        fix: {fix}", s.name),
        })
        .await;
        let passed = steps.iter().filter(|s| s.passed()).count();
        let all = objstore::preflight::STEPS;
        if passed == all {
            println!("storage: ok ({all} of {all} steps)");
            Ok(0)
        } else {
            println!("storage: failed ({passed} of {all} steps passed)");
            Ok(1)
        }
    })
}

/// `fence --page PAGE --server PID`, exactly as `lease::watchdog` starts it; anything else goes
/// to the parser (which also knows `fence`, hidden, for the same arguments in another order).
fn fence_args() -> Option<(std::path::PathBuf, u32)> {
    let mut args = std::env::args_os().skip(1);
    let mut next = || args.next();
    if next()? != "fence" || next()? != "--page" {
        return None;
    }
    let page = next()?;
    if next()? != "--server" {
        return None;
    }
    let server = next()?.to_str()?.parse().ok()?;
    next().is_none().then(|| (page.into(), server))
}
