//! Checkpoint benchmark: a 1 GiB environment directory of mixed files, checkpointed to moto S3
//! and to the local backend, against `tar | zstd` + a plain upload and against restic on the
//! same server. Prints a markdown table.
//!
//! `MOTO_SERVER=/path/to/moto_server cargo bench --bench checkpoint` (`BENCH_BACKENDS=local`
//! or `=s3` to run one backend, `=s3s` for s3s-fs instead of moto, or a comma-separated list;
//! `RUST_LOG=state_manager=info` also logs each restore's phases).
//!
//! moto is a Python server that costs a few milliseconds of CPU per request, on the same cores
//! as the client; s3s-fs (`S3S_FS=/path/to/s3s-fs`, as the tests find it) is a Rust server
//! whose cost per request is small, so its column measures the clients more than the server.
//! Needs `tar`, `zstd`, `restic` and `python3` on PATH.

#[path = "checkpoint/data.rs"]
mod data;
#[allow(dead_code)]
#[path = "../tests/common/moto.rs"]
mod moto;
#[path = "checkpoint/peers.rs"]
mod peers;
#[allow(dead_code)]
#[path = "../tests/common/s3s.rs"]
mod s3s;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use state_manager::checkpoint::{
    CheckpointEngine, CheckpointSummary, CreateRequest, EngineOptions, FreezeError, Freezer,
};
use state_manager::config::StorageConfig;
use state_manager::objstore::{self, DynStore};

const MIB: f64 = 1024.0 * 1024.0;

/// SIGSTOP/SIGCONT of one process group, waiting until its leader is really stopped.
struct StopGroup(i32);

#[async_trait::async_trait]
impl Freezer for StopGroup {
    async fn freeze(&self) -> Result<(), FreezeError> {
        killpg(Pid::from_raw(self.0), Signal::SIGSTOP)?;
        let stat = format!("/proc/{}/stat", self.0);
        while !std::fs::read_to_string(&stat)?
            .split(") ")
            .nth(1)
            .is_some_and(|s| s.starts_with('T'))
        {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        Ok(())
    }
    async fn thaw(&self) -> Result<(), FreezeError> {
        Ok(killpg(Pid::from_raw(self.0), Signal::SIGCONT)?)
    }
}

/// A process rewriting random 4 KiB pages of a 64 MiB file, one page per millisecond.
fn start_writer(file: &Path) -> Child {
    use std::os::unix::process::CommandExt;
    let script = format!(
        "import os,random,time\nf=open({:?},'r+b')\npage=os.urandom(4096)\nwhile True:\n f.seek(random.randrange(16384)*4096); f.write(page); f.flush(); time.sleep(0.001)\n",
        file.display().to_string()
    );
    Command::new("python3")
        .args(["-c", &script])
        .process_group(0)
        .spawn()
        .expect("python3")
}

struct Column {
    name: String,
    rows: Vec<(String, String)>,
}

impl Column {
    fn row(&mut self, what: &str, value: String) {
        eprintln!("[{}] {what}: {value}", self.name);
        self.rows.push((what.to_string(), value));
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

async fn checkpoint(
    engine: &CheckpointEngine,
    freezer: Arc<dyn Freezer>,
) -> (CheckpointSummary, Duration) {
    let start = Instant::now();
    let s = engine
        .create(CreateRequest {
            freezer: Some(freezer),
            ..Default::default()
        })
        .await
        .unwrap();
    (s, start.elapsed())
}

/// A no-op freezer: the staging copy happens as in production, nothing is stopped.
struct NoWriters;

#[async_trait::async_trait]
impl Freezer for NoWriters {
    async fn freeze(&self) -> Result<(), FreezeError> {
        Ok(())
    }
    async fn thaw(&self) -> Result<(), FreezeError> {
        Ok(())
    }
}

struct Target {
    storage: StorageConfig,
    restic_repo: String,
    restic_env: Vec<(String, String)>,
    /// The S3 server the bench started, kept to be stopped when dropped.
    _server: Option<Box<dyn std::any::Any>>,
}

fn target(backend: &str, work: &Path) -> Target {
    match backend {
        "local" => Target {
            storage: StorageConfig {
                endpoint: Some(format!("file://{}", work.join("objects").display())),
                key_prefix: Some("env-1".into()),
                ..StorageConfig::default()
            },
            restic_repo: work.join("restic-repo").display().to_string(),
            restic_env: Vec::new(),
            _server: None,
        },
        "s3s" => {
            let server = s3s::S3sServer::start();
            server.create_bucket("bench");
            server.create_bucket("restic");
            let (storage, endpoint) = (server.storage_config("bench", "env-1"), server.endpoint());
            let keys = (s3s::ACCESS_KEY, s3s::SECRET_KEY);
            s3_target(storage, &endpoint, keys, Box::new(server))
        }
        _ => {
            let server = moto::MotoServer::start();
            server.create_bucket("bench");
            server.create_bucket("restic");
            let (storage, endpoint) = (server.storage_config("bench", "env-1"), server.endpoint());
            s3_target(storage, &endpoint, ("testing", "testing"), Box::new(server))
        }
    }
}

/// Our storage on `server` and restic's repository beside it, in bucket `restic`.
fn s3_target(
    storage: StorageConfig,
    endpoint: &str,
    (key, secret): (&str, &str),
    server: Box<dyn std::any::Any>,
) -> Target {
    let env = [
        ("AWS_ACCESS_KEY_ID", key),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ];
    Target {
        storage,
        restic_repo: format!("s3:{endpoint}/restic"),
        restic_env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        _server: Some(server),
    }
}

async fn engine(store: &DynStore, work: &Path, node: &str) -> CheckpointEngine {
    let e = CheckpointEngine::new(
        store.clone(),
        work.join(node).join("env"),
        work.join(node).join("state"),
        EngineOptions::default(),
    )
    .unwrap();
    e.recover().await.unwrap();
    e
}

async fn bench(backend: &str, work: &Path) -> Column {
    let mut col = Column {
        name: backend.to_string(),
        rows: Vec::new(),
    };
    let t = target(backend, work);
    let store = objstore::open(Some(&t.storage), work).await.unwrap();
    let env = work.join("a/env");
    std::fs::create_dir_all(&env).unwrap();
    let total = data::generate(&env);
    col.row(
        "data",
        format!("{:.0} MiB in {} files", total as f64 / MIB, 2048 + 14),
    );

    let (tz, up, size) = peers::tar_zstd_upload(&env, work, &store).await;
    let tar_total = tz + up;
    col.row(
        "`tar \\| zstd -3` + upload",
        format!(
            "{} ({} + {}), {:.0} MiB",
            secs(tar_total),
            secs(tz),
            secs(up),
            size as f64 / MIB
        ),
    );

    let a = engine(&store, work, "a").await;
    let (full, full_t) = checkpoint(&a, Arc::new(NoWriters)).await;
    col.row(
        "full checkpoint",
        format!(
            "{}, {:.0} MiB uploaded in {} chunks, freeze {} ms",
            secs(full_t),
            full.uploaded_bytes as f64 / MIB,
            full.chunks_new,
            full.freeze_ms
        ),
    );
    col.row(
        "full ÷ tar+upload (target ≤ 1.0)",
        format!("{:.2}×", full_t.as_secs_f64() / tar_total.as_secs_f64()),
    );

    let restic = peers::Restic {
        repo: t.restic_repo.clone(),
        env: t.restic_env.clone(),
        cache: work.join("restic-cache"),
    };
    restic.init();
    let r_full = restic.backup(&env);
    col.row(
        "restic full backup",
        format!(
            "{}, {:.0} MiB added",
            secs(r_full.wall),
            r_full.data_added as f64 / MIB
        ),
    );
    col.row(
        "full ÷ restic full",
        format!("{:.2}×", full_t.as_secs_f64() / r_full.wall.as_secs_f64()),
    );

    let changed = data::change_one_percent(&env, 0);
    let size_after_change = data::du(&env);
    let (inc, inc_t) = checkpoint(&a, Arc::new(NoWriters)).await;
    col.row(
        "checkpoint after a 1 % change",
        format!(
            "{}, {:.1} MiB uploaded ({} chunks) for {:.1} MiB changed",
            secs(inc_t),
            inc.uploaded_bytes as f64 / MIB,
            inc.chunks_new,
            changed as f64 / MIB
        ),
    );
    col.row(
        "  uploaded ÷ data (target ≤ 2 %)",
        format!("{:.2} %", 100.0 * inc.uploaded_bytes as f64 / total as f64),
    );
    col.row(
        "  time ÷ full (target ≤ 10 %)",
        format!(
            "{:.1} %",
            100.0 * inc_t.as_secs_f64() / full_t.as_secs_f64()
        ),
    );
    let r_inc = restic.backup(&env);
    col.row(
        "restic backup after the change",
        format!(
            "{}, {:.1} MiB added",
            secs(r_inc.wall),
            r_inc.data_added as f64 / MIB
        ),
    );
    col.row(
        "incremental ÷ restic incremental",
        format!("{:.2}×", inc_t.as_secs_f64() / r_inc.wall.as_secs_f64()),
    );

    // Restores on a fresh node, restic's and ours alternated, each on settled memory (`settle`).
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for (round, node) in ["b", "c"].into_iter().enumerate() {
        settle();
        theirs.push(cpu_of(|| {
            restic.restore(&work.join(format!("restic-restore-{round}")));
        }));
        settle();
        let fresh = engine(&store, work, node).await;
        let manifest = fresh.load_manifest(inc.id.as_str()).await.unwrap();
        let start = (Instant::now(), cpu_self());
        fresh.restore(&manifest).await.unwrap();
        ours.push((start.0.elapsed(), cpu_self() - start.1));
        assert_eq!(
            data::du(fresh.env_dir()),
            size_after_change,
            "the restored tree has the checkpointed size"
        );
    }
    let (ours, theirs) = (fastest(&ours), fastest(&theirs));
    col.row(
        "restore on a fresh node (faster of two)",
        format!("{}, {:.1} s of CPU", secs(ours.0), ours.1.as_secs_f64()),
    );
    col.row(
        "restic restore (faster of two, alternated with ours)",
        format!(
            "{}, {:.1} s of CPU (ours ÷ restic {:.2}×)",
            secs(theirs.0),
            theirs.1.as_secs_f64(),
            ours.0.as_secs_f64() / theirs.0.as_secs_f64()
        ),
    );
    settle();
    let start = Instant::now();
    a.restore(&a.load_manifest(full.id.as_str()).await.unwrap())
        .await
        .unwrap();
    col.row(
        "restore over the live tree (older checkpoint)",
        secs(start.elapsed()),
    );

    freeze_window(&mut col, &store, work, &env).await;
    col
}

/// Let the memory freed by the step before settle before a timed restore. A restore writes 1 GiB
/// of new files into the page cache; on a virtual machine that gives freed memory back to its
/// host (virtio-balloon free page reporting), a page touched for the first time since costs far
/// more than one freed a moment ago: `dd` of 1 GiB into a new file took 6.6 s of system time
/// when the memory had settled and 0.35 s right after `rm` of another 1 GiB file. Without this,
/// whichever restore runs right after a large `rm` (the old tree a restore replaced) is the
/// cheaper one.
fn settle() {
    nix::unistd::sync();
    std::thread::sleep(Duration::from_secs(5));
}

/// CPU time (user + system) of this process so far, all threads.
fn cpu_self() -> Duration {
    cpu(libc::RUSAGE_SELF)
}

fn cpu(who: libc::c_int) -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one rusage into the pointer it is given, which points to one.
    let usage = unsafe {
        libc::getrusage(who, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Wall and CPU time of `run`, which runs and waits for child processes.
fn cpu_of(run: impl FnOnce()) -> (Duration, Duration) {
    let (start, before) = (Instant::now(), cpu(libc::RUSAGE_CHILDREN));
    run();
    (start.elapsed(), cpu(libc::RUSAGE_CHILDREN) - before)
}

fn fastest(runs: &[(Duration, Duration)]) -> (Duration, Duration) {
    *runs.iter().min_by_key(|r| r.0).expect("at least one run")
}

/// Checkpoints while a process writes continuously and is stopped with SIGSTOP.
async fn freeze_window(col: &mut Column, store: &DynStore, work: &Path, env: &Path) {
    let live = env.join("live.db");
    std::fs::write(&live, vec![0u8; 64 << 20]).unwrap();
    let mut writer = start_writer(&live);
    let freezer: Arc<dyn Freezer> = Arc::new(StopGroup(writer.id() as i32));
    let a = engine(store, work, "a").await;
    let (s, t) = checkpoint(&a, freezer.clone()).await;
    col.row(
        "with a live writer: checkpoint",
        format!("freeze {} ms of {}", s.freeze_ms, secs(t)),
    );
    data::change_one_percent(env, 1);
    let (s, t) = checkpoint(&a, freezer.clone()).await;
    col.row(
        "with a live writer: after a 1 % change",
        format!("freeze {} ms of {}", s.freeze_ms, secs(t)),
    );
    let fresh = CheckpointEngine::new(
        store.clone(),
        env,
        work.join("fresh-state"),
        EngineOptions::default(),
    )
    .unwrap();
    fresh.recover().await.unwrap();
    let (s, t) = checkpoint(&fresh, freezer).await;
    col.row(
        "with a live writer: first checkpoint of a node (no index)",
        format!("freeze {} ms of {}", s.freeze_ms, secs(t)),
    );
    let _ = killpg(Pid::from_raw(writer.id() as i32), Signal::SIGKILL);
    let _ = writer.wait();
}

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        // e.g. RUST_LOG=state_manager=info: each restore's phases (fetch, sync, swap).
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let backends: Vec<String> = match std::env::var("BENCH_BACKENDS") {
        Ok(list) => list.split(',').map(|b| b.trim().to_string()).collect(),
        Err(_) => vec!["s3".into(), "local".into()],
    };
    if let Some(b) = backends
        .iter()
        .find(|b| !["s3", "s3s", "local"].contains(&b.as_str()))
    {
        eprintln!("BENCH_BACKENDS: unknown backend {b:?}; use s3, s3s or local (comma-separated)");
        std::process::exit(2);
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut columns = Vec::new();
    for b in backends {
        let work = tempfile::tempdir_in(
            std::env::var("BENCH_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| std::env::temp_dir()),
        )
        .unwrap();
        columns.push(rt.block_on(bench(&b, work.path())));
    }
    print_table(&columns);
}

fn print_table(columns: &[Column]) {
    let names: Vec<&str> = columns
        .iter()
        .map(|c| match c.name.as_str() {
            "s3" => "S3 (moto)",
            "s3s" => "S3 (s3s-fs)",
            _ => "local backend",
        })
        .collect();
    println!("| measure | {} |", names.join(" | "));
    println!("|---|{}", "---|".repeat(columns.len()));
    for (i, (what, _)) in columns[0].rows.iter().enumerate() {
        let cells: Vec<&str> = columns
            .iter()
            .map(|c| c.rows.get(i).map_or("", |r| r.1.as_str()))
            .collect();
        println!("| {what} | {} |", cells.join(" | "));
    }
}
