//! The conformance cases every backend must pass. Each takes a [`Backend`] that makes stores
//! for a key prefix; stores of different prefixes must not see each other.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use state_manager::objstore::{DynStore, ETag, StorageError};

use super::Backend;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn assert_not_found<T: std::fmt::Debug>(r: Result<T, StorageError>, what: &str) {
    match r {
        Err(StorageError::NotFound { .. }) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

fn assert_precondition<T: std::fmt::Debug>(r: Result<T, StorageError>, what: &str) {
    match r {
        Err(StorageError::PreconditionFailed { .. }) => {}
        other => panic!("{what}: expected PreconditionFailed, got {other:?}"),
    }
}

pub async fn get_put_head_delete(be: &Backend) {
    let s = be.store("env-1").await;
    let etag = s.put("a/b/c.txt", b("hello")).await.unwrap();
    let obj = s.get("a/b/c.txt").await.unwrap();
    assert_eq!(obj.body, b("hello"));
    assert_eq!(obj.etag, etag);
    let meta = s
        .head("a/b/c.txt")
        .await
        .unwrap()
        .expect("head finds the object");
    assert_eq!((meta.key.as_str(), meta.size), ("a/b/c.txt", 5));
    assert_eq!(meta.etag, etag);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (meta.modified_unix - now).abs() < 300,
        "modified {}",
        meta.modified_unix
    );

    let etag2 = s.put("a/b/c.txt", b("world!")).await.unwrap();
    assert_ne!(etag2, etag, "an overwrite gets a new etag");
    assert_eq!(s.get("a/b/c.txt").await.unwrap().body, b("world!"));

    s.delete("a/b/c.txt").await.unwrap();
    assert!(s.head("a/b/c.txt").await.unwrap().is_none());
    s.delete("a/b/c.txt")
        .await
        .expect("deleting a missing object is fine");
    assert!(s.list("").await.unwrap().is_empty());
}

pub async fn missing_keys_are_not_found(be: &Backend) {
    let s = be.store("env-1").await;
    assert_not_found(s.get("nope").await, "get");
    assert_not_found(s.get_range("nope", 0..10).await, "get_range");
    assert_not_found(s.get_range("nope", 3..3).await, "empty get_range");
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    assert_not_found(s.get_to_file("nope", &dest).await, "get_to_file");
    assert!(!dest.exists(), "a failed download leaves no file");
    assert!(s.head("nope").await.unwrap().is_none());
    s.put("file", b("x")).await.unwrap();
    assert!(s.head("file/below").await.unwrap().is_none());
    assert_not_found(s.get("file/below").await, "get below an object");
}

pub async fn get_range_clamps(be: &Backend) {
    let s = be.store("env-1").await;
    s.put("r", b("0123456789")).await.unwrap();
    assert_eq!(s.get_range("r", 0..4).await.unwrap(), b("0123"));
    assert_eq!(s.get_range("r", 3..7).await.unwrap(), b("3456"));
    assert_eq!(s.get_range("r", 8..100).await.unwrap(), b("89"));
    assert_eq!(s.get_range("r", 4..4).await.unwrap(), Bytes::new());
    assert_eq!(s.get_range("r", 10..20).await.unwrap(), Bytes::new());
    assert_eq!(s.get_range("r", 50..60).await.unwrap(), Bytes::new());
}

pub async fn conditional_writes(be: &Backend) {
    let s = be.store("env-1").await;
    let e1 = s.put_if_absent("lease.json", b("v1")).await.unwrap();
    assert_precondition(
        s.put_if_absent("lease.json", b("v2")).await,
        "second put_if_absent",
    );
    assert_eq!(s.get("lease.json").await.unwrap().body, b("v1"));

    let e2 = s.put_if_match("lease.json", b("v2"), &e1).await.unwrap();
    assert_ne!(e1, e2);
    assert_eq!(s.get("lease.json").await.unwrap().etag, e2);
    assert_precondition(
        s.put_if_match("lease.json", b("v3"), &e1).await,
        "stale etag",
    );
    let bogus = ETag("\"not-an-etag\"".into());
    assert_precondition(
        s.put_if_match("lease.json", b("v3"), &bogus).await,
        "bogus etag",
    );
    assert_eq!(s.get("lease.json").await.unwrap().body, b("v2"));

    let e3 = s.put("lease.json", b("v3")).await.unwrap();
    assert_precondition(
        s.put_if_match("lease.json", b("v4"), &e2).await,
        "after overwrite",
    );
    s.put_if_match("lease.json", b("v4"), &e3).await.unwrap();

    assert_precondition(s.put_if_match("gone", b("x"), &e3).await, "missing object");
    s.delete("lease.json").await.unwrap();
    assert_precondition(
        s.put_if_match("lease.json", b("x"), &e3).await,
        "deleted object",
    );
    s.put_if_absent("lease.json", b("again")).await.unwrap();
}

pub async fn every_version_has_a_new_etag(be: &Backend) {
    let s = be.store("env-1").await;
    let mut seen = HashSet::new();
    let mut etag = s.put_if_absent("v", b("version-000")).await.unwrap();
    seen.insert(etag.clone());
    for i in 1..60 {
        let body = Bytes::from(format!("version-{i:03}"));
        etag = s.put_if_match("v", body, &etag).await.unwrap();
        assert!(
            seen.insert(etag.clone()),
            "etag {etag:?} repeated at version {i}"
        );
    }
}

pub async fn one_winner_of_16_put_if_absent(be: &Backend) {
    let s = be.store("env-1").await;
    for round in 0..3 {
        let key = format!("race-{round}");
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let (s, key) = (s.clone(), key.clone());
                tokio::spawn(async move {
                    (i, s.put_if_absent(&key, Bytes::from(format!("{i}"))).await)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                (i, Ok(_)) => winners.push(i),
                (_, Err(StorageError::PreconditionFailed { .. })) => {}
                (i, Err(e)) => panic!("writer {i}: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let body = s.get(&key).await.unwrap().body;
        assert_eq!(body, Bytes::from(format!("{}", winners[0])));
    }
}

pub async fn invalid_keys_are_rejected(be: &Backend) {
    let s = be.store("env-1").await;
    let file = tempfile::NamedTempFile::new().unwrap();
    for key in [
        "",
        "/abs",
        "a/",
        "a//b",
        "../escape",
        "a/../../b",
        "./x",
        "a\\b",
        "a\nb",
    ] {
        let results = [
            s.get(key).await.err(),
            s.get_range(key, 0..1).await.err(),
            s.head(key).await.err(),
            s.put(key, b("x")).await.err(),
            s.put_if_absent(key, b("x")).await.err(),
            s.put_if_match(key, b("x"), &ETag("e".into())).await.err(),
            s.put_file(key, file.path()).await.err(),
            s.get_to_file(key, file.path()).await.err(),
            s.delete(key).await.err(),
        ];
        for (op, r) in results.into_iter().enumerate() {
            assert!(
                matches!(r, Some(StorageError::InvalidKey { .. })),
                "key {key:?} op #{op}: {r:?}"
            );
        }
    }
    for prefix in ["/", "../", "a//", "a/../b"] {
        let r = s.list(prefix).await;
        assert!(
            matches!(r, Err(StorageError::InvalidKey { .. })),
            "{prefix:?}: {r:?}"
        );
    }
    assert!(s.list("").await.unwrap().is_empty(), "nothing was written");
}

pub async fn prefixes_are_isolated(be: &Backend) {
    let (a, c) = (be.store("env-a").await, be.store("env-c").await);
    a.put("shared/key", b("from a")).await.unwrap();
    c.put("shared/key", b("from c")).await.unwrap();
    c.put_if_absent("only-c", b("c")).await.unwrap();
    assert_eq!(a.get("shared/key").await.unwrap().body, b("from a"));
    assert_eq!(c.get("shared/key").await.unwrap().body, b("from c"));
    assert!(a.head("only-c").await.unwrap().is_none());
    a.put_if_absent("only-c", b("a"))
        .await
        .expect("absent under env-a");
    let keys = |v: Vec<state_manager::objstore::ObjectMeta>| {
        v.into_iter().map(|m| m.key).collect::<Vec<_>>()
    };
    assert_eq!(keys(a.list("").await.unwrap()), ["only-c", "shared/key"]);
    a.delete("shared/key").await.unwrap();
    assert_eq!(c.get("shared/key").await.unwrap().body, b("from c"));
}

pub async fn list_sorted_and_filtered(be: &Backend) {
    let s = be.store("env-1").await;
    let keys = [
        "db/gen-0002/snap",
        "db/gen-0001/wal/0001",
        "db/gen-0001/snap",
        "db-other",
        "lease.json",
        "chunks/ab",
        "chunks/aa",
    ];
    for (i, k) in keys.iter().enumerate() {
        s.put(k, Bytes::from(vec![b'x'; i + 1])).await.unwrap();
    }
    let all = s.list("").await.unwrap();
    let mut sorted = keys.to_vec();
    sorted.sort();
    assert_eq!(
        all.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(),
        sorted
    );
    for m in &all {
        let head = s.head(&m.key).await.unwrap().unwrap();
        assert_eq!(&head, m, "list and head agree on {}", m.key);
    }
    let names = |p: &'static str| {
        let s = s.clone();
        async move {
            let v = s.list(p).await.unwrap();
            v.into_iter().map(|m| m.key).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        names("db/").await,
        [
            "db/gen-0001/snap",
            "db/gen-0001/wal/0001",
            "db/gen-0002/snap"
        ]
    );
    assert_eq!(
        names("db/gen-0001").await,
        ["db/gen-0001/snap", "db/gen-0001/wal/0001"]
    );
    assert_eq!(names("db").await.len(), 4);
    assert_eq!(names("chunks/a").await, ["chunks/aa", "chunks/ab"]);
    assert!(names("nothing/").await.is_empty());
    assert!(names("lease.json/").await.is_empty());
}

pub async fn list_more_than_1000(be: &Backend) {
    let s = be.store("env-1").await;
    let n = 1100;
    futures::stream::iter(0..n)
        .map(|i| {
            let s: DynStore = Arc::clone(&s);
            async move {
                s.put(&format!("many/{i:05}"), Bytes::from(format!("{i}")))
                    .await
            }
        })
        .buffer_unordered(16)
        .for_each(|r| async move {
            r.unwrap();
        })
        .await;
    let listed = s.list("many/").await.unwrap();
    assert_eq!(listed.len(), n);
    for (i, m) in listed.iter().enumerate() {
        assert_eq!(m.key, format!("many/{i:05}"));
    }
}

pub async fn files_round_trip(be: &Backend) {
    let s = be.store("env-1").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("small.bin");
    std::fs::write(&src, b"small file").unwrap();
    let etag = s.put_file("files/small", &src).await.unwrap();
    assert_eq!(s.head("files/small").await.unwrap().unwrap().etag, etag);

    let dest = dir.path().join("new/dir/out.bin");
    assert_eq!(s.get_to_file("files/small", &dest).await.unwrap(), 10);
    assert_eq!(std::fs::read(&dest).unwrap(), b"small file");
    std::fs::write(&dest, b"old content that is longer").unwrap();
    s.get_to_file("files/small", &dest).await.unwrap();
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        b"small file",
        "replaced whole"
    );
    let stray: Vec<_> = std::fs::read_dir(dest.parent().unwrap()).unwrap().collect();
    assert_eq!(stray.len(), 1, "no temp files left beside the download");

    let missing = dir.path().join("missing.bin");
    let r = s.put_file("files/x", &missing).await;
    assert!(matches!(r, Err(StorageError::Io { .. })), "{r:?}");
    assert!(s.head("files/x").await.unwrap().is_none());
}

pub async fn large_file_round_trip(be: &Backend) {
    let s = be.store("env-1").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.bin");
    let size = 40 * 1024 * 1024 + 12_345;
    let mut data = vec![0u8; size];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(&src, &data).unwrap();
    let etag = s.put_file("big/blob", &src).await.unwrap();
    if let Backend::Moto(_) = be {
        // S3 gives a multipart object the ETag `"<md5 of part md5s>-<part count>"`.
        assert!(
            etag.0.trim_matches('"').ends_with("-6"),
            "{etag:?} is not multipart"
        );
    }
    let meta = s.head("big/blob").await.unwrap().unwrap();
    assert_eq!((meta.size, &meta.etag), (size as u64, &etag));

    let dest = dir.path().join("copy.bin");
    assert_eq!(s.get_to_file("big/blob", &dest).await.unwrap(), size as u64);
    let copy = std::fs::read(&dest).unwrap();
    assert!(copy == data, "downloaded bytes differ from the upload");
    let mid = 20 * 1024 * 1024;
    let range = s.get_range("big/blob", mid..mid + 1000).await.unwrap();
    assert_eq!(&range[..], &data[mid as usize..mid as usize + 1000]);
}
