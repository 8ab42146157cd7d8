//! Round trips and incremental checkpoints.

use std::fs;
use std::sync::Arc;

use state_manager::checkpoint::{CheckpointEngine, CreateRequest, Freezer};

use super::fixture::{CountingFreezer, Fx};
use super::tree::{
    assert_same_tree, describe, many_small_files, mixed_tree, set_mtime, write_random,
};

pub async fn take(engine: &CheckpointEngine) -> state_manager::checkpoint::CheckpointSummary {
    engine.create(CreateRequest::default()).await.unwrap()
}

/// A checkpoint with a freezer, so changed files go through staging.
async fn take_frozen(engine: &CheckpointEngine) -> state_manager::checkpoint::CheckpointSummary {
    let freezer: Arc<dyn Freezer> = Arc::new(CountingFreezer::default());
    let req = CreateRequest {
        freezer: Some(freezer),
        ..CreateRequest::default()
    };
    engine.create(req).await.unwrap()
}

pub async fn restore(engine: &CheckpointEngine, id: &str) {
    let m = engine.load_manifest(id).await.unwrap();
    engine.restore(&m).await.unwrap();
}

/// Content, modes, owners, symlinks, empty dirs, mtimes, a 200 MB file and 10,000 small files
/// come back byte for byte, on the same node over a changed tree and on a fresh node.
pub async fn round_trip(fx: Fx) {
    let env = fx.env("a");
    fs::create_dir_all(&env).unwrap();
    mixed_tree(&env);
    many_small_files(&env, 10_000);
    write_random(&env.join("data/big.bin"), 200 * 1024 * 1024, 42);
    let a = fx.engine("a").await;
    let freezer = Arc::new(CountingFreezer::default());
    let req = CreateRequest {
        label: Some("before-upgrade".into()),
        epoch: Some(7),
        freezer: Some(freezer.clone() as Arc<dyn Freezer>),
        ..CreateRequest::default()
    };
    let summary = a.create(req).await.unwrap();
    let expected = describe(&env);
    let files = expected
        .values()
        .filter(|n| matches!(n, super::tree::Node::File { .. }))
        .count();
    assert_eq!(summary.files as usize, files);
    assert!(
        summary.bytes > 200 * 1024 * 1024 && summary.chunks_new > 100,
        "{summary:?}"
    );
    assert!(
        summary.uploaded_bytes < summary.bytes,
        "compressible parts compress: {summary:?}"
    );
    assert_eq!(summary.label.as_deref(), Some("before-upgrade"));
    assert_eq!(freezer.thaws.load(std::sync::atomic::Ordering::SeqCst), 1);

    fs::remove_dir_all(env.join("app")).unwrap();
    fs::write(env.join("data/log.txt"), "changed").unwrap();
    fs::write(env.join("new-file"), "new").unwrap();
    restore(&a, summary.id.as_str()).await;
    assert_same_tree(&expected, &describe(&env));
    let beside = env.parent().unwrap().to_path_buf();
    crate::common::wait_for(
        "the old tree to be deleted",
        std::time::Duration::from_secs(300),
        || (fs::read_dir(&beside).unwrap().count() == 2).then_some(()),
    );

    let b = fx.engine("b").await;
    let m = b.load_manifest(summary.id.as_str()).await.unwrap();
    assert_eq!(
        (m.epoch, m.label.as_deref()),
        (Some(7), Some("before-upgrade"))
    );
    b.restore(&m).await.unwrap();
    assert_same_tree(&expected, &describe(&fx.env("b")));
}

/// Changing one file uploads only that file's new chunks; an unchanged tree uploads nothing.
/// (With a freezer: a modified large file is cut during the window, only its new chunks
/// are staged.)
pub async fn incremental(fx: Fx) {
    let env = fx.env("a");
    fs::create_dir_all(env.join("small")).unwrap();
    for i in 0..4 {
        write_random(&env.join(format!("big{i}.bin")), 8 * 1024 * 1024, i);
    }
    for i in 0..200 {
        fs::write(
            env.join(format!("small/{i}.txt")),
            format!("small file {i}\n").repeat(50),
        )
        .unwrap();
    }
    for e in walkdir::WalkDir::new(&env).contents_first(true) {
        set_mtime(e.unwrap().path(), 3600);
    }
    let a = fx.engine("a").await;
    let first = take_frozen(&a).await;
    assert!(first.chunks_new >= 4 * 2, "{first:?}");

    let unchanged = take_frozen(&a).await;
    assert_eq!(
        (unchanged.chunks_new, unchanged.uploaded_bytes),
        (0, 0),
        "{unchanged:?}"
    );

    let mut big = fs::read(env.join("big2.bin")).unwrap();
    big[4 * 1024 * 1024] ^= 0xff;
    fs::write(env.join("big2.bin"), &big).unwrap();
    let second = take_frozen(&a).await;
    assert!((1..=2).contains(&second.chunks_new), "{second:?}");
    assert!(
        second.uploaded_bytes <= 2 * 4 * 1024 * 1024 + 4096,
        "{second:?}"
    );
    assert!(
        second.uploaded_bytes * 20 < first.uploaded_bytes,
        "{second:?} vs {first:?}"
    );
    assert_eq!(second.bytes, first.bytes);
    let at_second = describe(&env);

    fs::write(env.join("small/7.txt"), "edited\n").unwrap();
    let third = take_frozen(&a).await;
    assert_eq!(
        third.chunks_new, 1,
        "one new pack holding the edited file: {third:?}"
    );
    assert!(third.uploaded_bytes < 1024, "{third:?}");

    restore(&a, second.id.as_str()).await;
    assert_same_tree(&at_second, &describe(&env));
    let after_restore = take_frozen(&a).await;
    assert_eq!(
        after_restore.chunks_new, 0,
        "a restored tree is indexed: {after_restore:?}"
    );
}

/// `checkpoint.exclude` leaves matching entries out, and a restore does not bring them back.
pub async fn excludes(fx: Fx) {
    let env = fx.env("a");
    fs::create_dir_all(env.join("cache/deep")).unwrap();
    fs::create_dir_all(env.join("var/tmp")).unwrap();
    fs::write(env.join("cache/deep/x"), "x").unwrap();
    fs::write(env.join("var/tmp/y"), "y").unwrap();
    fs::write(env.join("a.log"), "log").unwrap();
    fs::write(env.join("keep.txt"), "keep").unwrap();
    let mut opts = Fx::options();
    opts.exclude = vec!["cache".into(), "*.log".into(), "var/tmp/**".into()];
    let a = fx.engine_with("a", opts).await;
    let s = take(&a).await;
    let m = a.load_manifest(s.id.as_str()).await.unwrap();
    let paths: Vec<&str> = m.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["keep.txt", "var", "var/tmp"]);
}
