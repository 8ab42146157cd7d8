//! Building test trees and comparing them: content hashes, modes, owners, symlink targets and
//! mtimes of every entry, including `env_dir` itself.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, SystemTime};

use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;

/// What a tree comparison looks at, per entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Dir {
        mode: u32,
        mtime_ns: i64,
    },
    File {
        mode: u32,
        mtime_ns: i64,
        uid: u32,
        size: u64,
        hash: String,
    },
    Symlink {
        target: String,
        mtime_ns: i64,
    },
}

/// Every entry under `root` (the root itself as ""), without following symlinks.
pub fn describe(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).follow_links(false) {
        let e = e.unwrap();
        let rel = e
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let md = e.path().symlink_metadata().unwrap();
        let mtime_ns = md.mtime() * 1_000_000_000 + md.mtime_nsec();
        let mode = md.mode() & 0o7777;
        let node = if md.is_dir() {
            Node::Dir { mode, mtime_ns }
        } else if md.file_type().is_symlink() {
            let target = fs::read_link(e.path())
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            Node::Symlink { target, mtime_ns }
        } else {
            let hash = blake3::hash(&fs::read(e.path()).unwrap())
                .to_hex()
                .to_string();
            Node::File {
                mode,
                mtime_ns,
                uid: md.uid(),
                size: md.len(),
                hash,
            }
        };
        out.insert(rel, node);
    }
    out
}

/// Panic naming the first entries that differ.
pub fn assert_same_tree(expected: &BTreeMap<String, Node>, actual: &BTreeMap<String, Node>) {
    let mut diffs = Vec::new();
    for (k, v) in expected {
        match actual.get(k) {
            Some(a) if a == v => {}
            Some(a) => diffs.push(format!("{k:?}: expected {v:?}, found {a:?}")),
            None => diffs.push(format!("{k:?}: missing")),
        }
    }
    diffs.extend(
        actual
            .keys()
            .filter(|k| !expected.contains_key(*k))
            .map(|k| format!("{k:?}: unexpected")),
    );
    assert!(
        diffs.is_empty(),
        "{} differences, first: {:#?}",
        diffs.len(),
        &diffs[..diffs.len().min(10)]
    );
}

/// Incompressible bytes from a seed, fast enough for hundreds of megabytes in a debug build.
pub fn write_random(path: &Path, len: u64, seed: u64) {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, fs::File::create(path).unwrap());
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        for w in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}

pub fn set_mtime(path: &Path, secs_ago: u64) {
    let t = SystemTime::now() - Duration::from_secs(secs_ago);
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    let ts = TimeSpec::new(d.as_secs() as i64, d.subsec_nanos() as i64);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &ts,
        &ts,
        UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Directories (some empty), files of several modes and sizes, symlinks of every kind, old
/// and new mtimes, a file owned by another user when running as root.
pub fn mixed_tree(root: &Path) {
    fs::create_dir_all(root.join("app/config")).unwrap();
    fs::create_dir_all(root.join("empty/nested/deeper")).unwrap();
    fs::create_dir_all(root.join("data")).unwrap();
    fs::write(root.join("app/config/app.toml"), "port = 8080\n").unwrap();
    fs::write(root.join("app/empty-file"), "").unwrap();
    fs::write(root.join("app/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    chmod(&root.join("app/run.sh"), 0o755);
    fs::write(root.join("app/secret"), "s3cr3t").unwrap();
    chmod(&root.join("app/secret"), 0o400);
    fs::write(root.join("app/setuid"), "x").unwrap();
    chmod(&root.join("app/setuid"), 0o4755);
    write_random(&root.join("data/blob.bin"), 3 * 1024 * 1024 + 17, 1);
    fs::write(root.join("data/log.txt"), "line of text\n".repeat(100_000)).unwrap();
    symlink("config/app.toml", root.join("app/link-rel")).unwrap();
    symlink("/etc/hostname", root.join("app/link-abs")).unwrap();
    symlink("does/not/exist", root.join("app/link-dangling")).unwrap();
    symlink("../data", root.join("app/link-dir")).unwrap();
    if nix::unistd::geteuid().is_root() {
        nix::unistd::chown(
            &root.join("app/config/app.toml"),
            Some(1234.into()),
            Some(1234.into()),
        )
        .unwrap();
    }
    for (p, ago) in [
        ("app/run.sh", 86_400),
        ("app/link-rel", 3600),
        ("empty/nested", 7200),
        ("app", 60),
    ] {
        set_mtime(&root.join(p), ago);
    }
    chmod(&root.join("empty/nested/deeper"), 0o750);
    set_mtime(root, 5);
}

/// `n` small files of varied sizes spread over 100 directories.
pub fn many_small_files(root: &Path, n: usize) {
    for i in 0..n {
        let dir = root.join(format!("small/d{:03}", i % 100));
        if i < 100 {
            fs::create_dir_all(&dir).unwrap();
        }
        let body = format!("file {i}\n").repeat(1 + i % 300);
        fs::write(dir.join(format!("f{i:05}.txt")), body).unwrap();
    }
}
