//! The storage conformance suite, run against the local-directory backend, moto, and s3s-fs
//! (which checks signatures; all but the racing case), plus what only one backend can show: conditional writes racing from two OS
//! processes on one directory, and an unreachable S3 endpoint failing fast.

use crate::common;

mod cases;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::backend::Backend;
use common::moto::MotoServer;
use state_manager::config::StorageConfig;
use state_manager::objstore::{self, StorageError};

/// One test per case and backend; the cases after `;` also run against s3s-fs. Before it: the
/// racing case, since s3s-fs's conditional writes are not atomic under a race.
macro_rules! conformance {
    ($($race:ident),* ; $($case:ident),* $(,)?) => {
        conformance!(@each local, local, $($race,)* $($case,)*);
        conformance!(@each s3, moto, $($race,)* $($case,)*);
        conformance!(@each s3s, s3s, $($case,)*);
    };
    (@each $module:ident, $make:ident, $($case:ident,)*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::cases::$case(&super::Backend::$make()).await;
                }
            )*
        }
    };
}

conformance!(
    one_winner_of_16_put_if_absent;
    prefixes_are_isolated,
    list_sorted_and_filtered,
    list_more_than_1000,
    get_put_head_delete,
    missing_keys_are_not_found,
    get_range_clamps,
    conditional_writes,
    every_version_has_a_new_etag,
    invalid_keys_are_rejected,
    files_round_trip,
    large_file_round_trip,
);

#[tokio::test]
async fn no_storage_section_means_objects_under_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let store = objstore::open(None, dir.path()).await.unwrap();
    store.put("db/x", Bytes::from_static(b"1")).await.unwrap();
    assert!(dir.path().join("objects/db/x").is_file());
    assert!(
        store.describe().ends_with("/objects"),
        "{}",
        store.describe()
    );
}

#[tokio::test]
async fn local_etag_changes_on_identical_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let store = objstore::open(None, dir.path()).await.unwrap();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let etag = store
            .put("same", Bytes::from_static(b"same bytes"))
            .await
            .unwrap();
        assert!(seen.insert(etag.clone()), "etag {etag:?} repeated");
    }
}

/// Set in a child process of `local_put_if_absent_across_processes`: the directory to race in.
const RACE_DIR: &str = "OBJSTORE_RACE_DIR";
/// Keys raced for at once, by 8 writers per key in each of the 2 processes.
const RACE_KEYS: usize = 25;

/// The child side of `local_put_if_absent_across_processes` (ignored in normal runs): once the
/// parent says go on stdin, 8 concurrent put_if_absent on each of the race keys; prints
/// `won <key>` for each success.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "run as a child process by local_put_if_absent_across_processes"]
async fn race_child() {
    let dir = std::path::PathBuf::from(std::env::var_os(RACE_DIR).expect("run by the parent test"));
    let store = objstore::open(None, &dir).await.unwrap();
    let pid = std::process::id();
    std::fs::write(dir.join(format!("ready-{pid}")), b"").unwrap();
    // Blocks until the parent writes a line to every child at once.
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    let tasks: Vec<_> = (0..RACE_KEYS * 8)
        .map(|i| {
            let store = store.clone();
            let key = format!("race-{}", i % RACE_KEYS);
            tokio::spawn(async move {
                let body = Bytes::from(format!("{pid}-{i}"));
                (key.clone(), store.put_if_absent(&key, body).await)
            })
        })
        .collect();
    for t in tasks {
        match t.await.unwrap() {
            (key, Ok(_)) => println!("won {key}"),
            (_, Err(StorageError::PreconditionFailed { .. })) => {}
            (_, Err(e)) => panic!("{e}"),
        }
    }
}

#[test]
fn local_put_if_absent_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = (0..2)
        .map(|_| {
            let args = [
                "objstore::race_child",
                "--exact",
                "--ignored",
                "--nocapture",
            ];
            std::process::Command::new(&exe)
                .args(args)
                .env(RACE_DIR, dir.path())
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    common::wait_for("both children ready", Duration::from_secs(60), || {
        let names = std::fs::read_dir(dir.path()).unwrap();
        let ready = names
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("ready-")
            })
            .count();
        (ready == 2).then_some(())
    });
    for child in &mut children {
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, b"go\n").unwrap();
    }
    let mut winners = std::collections::BTreeMap::<String, Vec<u32>>::new();
    for child in children {
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child {pid} failed: {stdout}");
        for key in stdout.lines().filter_map(|l| l.split("won ").nth(1)) {
            winners.entry(key.to_string()).or_default().push(pid);
        }
    }
    assert_eq!(
        winners.len(),
        RACE_KEYS,
        "every key has a winner: {winners:?}"
    );
    for (key, pids) in &winners {
        assert_eq!(pids.len(), 1, "{key} won by {pids:?}");
        let body = std::fs::read_to_string(dir.path().join("objects").join(key)).unwrap();
        assert!(body.starts_with(&format!("{}-", pids[0])), "{key}: {body}");
    }
}

/// A deadline for failing fast: generous, it guards against minutes-long hangs, not speed.
const FAIL_FAST: Duration = Duration::from_secs(20);

#[tokio::test]
async fn s3_unreachable_endpoint_fails_within_seconds() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = StorageConfig {
        bucket: Some("nobody-home".into()),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        access_key: Some("testing".into()),
        secret_key: Some("testing".into()),
        ..StorageConfig::default()
    };
    let store = objstore::open(Some(&cfg), Path::new("/nonexistent"))
        .await
        .unwrap();
    let started = Instant::now();
    let r = store.put("lease.json", Bytes::from_static(b"{}")).await;
    assert!(matches!(r, Err(StorageError::Backend { .. })), "{r:?}");
    assert!(
        started.elapsed() < FAIL_FAST,
        "took {:?}",
        started.elapsed()
    );
    let r = store.head("lease.json").await;
    assert!(matches!(r, Err(StorageError::Backend { .. })), "{r:?}");
    // Keys are checked before any request: no backend error, no wait.
    let r = store.get("../lease.json").await;
    assert!(matches!(r, Err(StorageError::InvalidKey { .. })), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_recovers_after_the_server_restarts() {
    let mut be = Backend::moto();
    let store = be.store("env-1").await;
    store.put("a", Bytes::from_static(b"1")).await.unwrap();

    be.moto_server_mut().stop();
    let started = Instant::now();
    let r = store.put("b", Bytes::from_static(b"2")).await;
    assert!(matches!(r, Err(StorageError::Backend { .. })), "{r:?}");
    assert!(
        started.elapsed() < FAIL_FAST,
        "took {:?}",
        started.elapsed()
    );

    be.moto_server_mut().restart();
    store
        .put("b", Bytes::from_static(b"2"))
        .await
        .expect("pooled client reconnects");
    assert_eq!(store.get("b").await.unwrap().body, Bytes::from_static(b"2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_hung_server_times_out_then_recovers() {
    let be = Backend::moto();
    let store = be.store("env-1").await;
    store.put("a", Bytes::from_static(b"1")).await.unwrap();

    be.moto_server().pause();
    let started = Instant::now();
    let r = store.get("a").await;
    let waited = started.elapsed();
    be.moto_server().resume();
    assert!(matches!(r, Err(StorageError::Backend { .. })), "{r:?}");
    assert!(waited < Duration::from_secs(60), "took {waited:?}");
    assert_eq!(store.get("a").await.unwrap().body, Bytes::from_static(b"1"));
}

#[tokio::test]
async fn s3_missing_bucket_is_a_backend_error_not_a_missing_key() {
    let moto = MotoServer::start();
    let cfg = moto.storage_config("no-such-bucket", "");
    let store = objstore::open(Some(&cfg), Path::new("/nonexistent"))
        .await
        .unwrap();
    let r = store.get("lease.json").await;
    assert!(matches!(r, Err(StorageError::Backend { .. })), "{r:?}");
    let r = store.put_if_absent("lease.json", Bytes::new()).await;
    assert!(matches!(r, Err(StorageError::Backend { .. })), "{r:?}");
}

/// s3s-fs checks signatures as AWS does: a wrong secret or an unknown access key is a
/// `credentials` failure naming where the credentials came from, never their value.
#[tokio::test]
async fn s3s_wrong_credentials_are_a_credentials_failure() {
    let be = Backend::s3s();
    let mut cfg = be.storage("env-1");
    cfg.secret_key = Some("not-the-secret-xyz".into());
    let store = objstore::open(Some(&cfg), Path::new("/nonexistent"))
        .await
        .unwrap();
    let err = store.list("").await.unwrap_err();
    let failure = err.failure().expect("a backend failure");
    assert_eq!(failure.kind, objstore::FailureKind::Credentials, "{err}");
    assert!(failure.message.contains("SignatureDoesNotMatch"), "{err}");
    assert!(
        failure
            .fix
            .contains("storage.access_key/secret_key in the config"),
        "{err}"
    );
    assert!(!err.to_string().contains("not-the-secret-xyz"), "{err}");

    cfg.access_key = Some("AKUNKNOWN".into());
    let store = objstore::open(Some(&cfg), Path::new("/nonexistent"))
        .await
        .unwrap();
    let err = store.get("lease.json").await.unwrap_err();
    let failure = err.failure().expect("a backend failure");
    assert_eq!(failure.kind, objstore::FailureKind::Credentials, "{err}");

    let good = be.store("env-1").await;
    assert!(good.list("").await.unwrap().is_empty());
}
