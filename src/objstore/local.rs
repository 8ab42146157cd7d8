//! The local-directory backend, the embedded default: each object is a plain file at
//! `<base>/<key_prefix>/<key>`.
//!
//! Invariants:
//! - Every write goes to a temp file beside its destination (fsync'd), is renamed into place and
//!   the directory is fsync'd: a reader sees the old object or the new one, never a mix, and a
//!   crash leaves at most a stray temp file (its name holds a backslash, so it is never listed).
//! - Conditional writes, unconditional renames and deletes hold an exclusive `flock` on
//!   `<base>/\lock` from the check to the rename, so they are atomic across threads and across
//!   processes that share the directory (two nodes racing for the lease object).
//! - ETag = `<inode>-<mtime ns>-<size>` in hex, read from one `fstat` (see `version`). Every
//!   write, under the lock, sets the new file's mtime strictly above the replaced file's, so
//!   consecutive versions of a key never share an ETag, even with identical bytes (S3's ETag is
//!   the content's MD5 instead: callers treat ETags as opaque).
//!
//! Limitation shared by every filesystem: a key cannot also be a directory of other keys
//! (`a` and `a/b` cannot both exist); such a write fails with [`StorageError::Io`].

mod version;

use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use self::version::{advance_mtime, etag_of};
use super::atomic::{self, RESERVED, TempFile};
use super::{
    ETag, Object, ObjectMeta, ObjectStore, Result, StorageError, validate_key, validate_prefix,
};

/// Objects as files under a directory. Cheap to clone.
#[derive(Clone, Debug)]
pub struct LocalStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Holds the lock file; shared by every key prefix under it.
    base: PathBuf,
    /// `base` joined with the key prefix: where keys start.
    root: PathBuf,
}

/// What a write requires of the current object.
enum Cond<'a> {
    None,
    Absent,
    Match(&'a ETag),
}

impl LocalStore {
    /// A store rooted at `base/key_prefix`, creating the directories (0700) if needed. Blocking.
    pub fn open(base: &Path, key_prefix: Option<&str>) -> Result<LocalStore> {
        let prefix = key_prefix.filter(|p| !p.is_empty());
        if let Some(p) = prefix {
            validate_key(p)?;
        }
        let root = prefix.map_or_else(|| base.to_path_buf(), |p| base.join(p));
        let io_err = |source| StorageError::Io {
            key: String::new(),
            source,
        };
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(io_err)?;
        let inner = Inner {
            base: base.to_path_buf(),
            root,
        };
        Ok(LocalStore {
            inner: Arc::new(inner),
        })
    }

    /// Run `f` on the blocking pool: every call here does file I/O and fsync.
    async fn run<T: Send + 'static>(
        &self,
        key: &str,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        let key = key.to_string();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StorageError::Io {
                key,
                source: io::Error::other(e),
            })?
    }
}

fn object_meta(key: String, meta: &Metadata) -> ObjectMeta {
    ObjectMeta {
        key,
        size: meta.len(),
        etag: etag_of(meta),
        modified_unix: meta.mtime(),
    }
}

/// Map an I/O error on `key`, turning "no such file" into [`StorageError::NotFound`].
fn io_err(key: &str) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| {
        if is_missing(&source) {
            StorageError::NotFound { key: key.into() }
        } else {
            StorageError::Io {
                key: key.into(),
                source,
            }
        }
    }
}

/// No file at the path: absent, or a path component is a directory or a file.
fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::IsADirectory | io::ErrorKind::NotADirectory
    )
}

/// Like [`io_err`] but every error stays an I/O error (for writes).
fn write_err(key: &str) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        key: key.to_string(),
        source,
    }
}

impl Inner {
    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Exclusive lock over every rename and delete under `base`; released on drop.
    fn lock(&self, key: &str) -> Result<File> {
        let path = self.base.join(format!("{RESERVED}lock"));
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(write_err(key))?;
        file.lock().map_err(write_err(key))?;
        Ok(file)
    }

    /// An open object file and its metadata; a directory counts as missing.
    fn open_object(&self, key: &str) -> Result<(File, Metadata)> {
        let file = File::open(self.path(key)).map_err(io_err(key))?;
        let meta = file.metadata().map_err(io_err(key))?;
        if !meta.is_file() {
            return Err(StorageError::NotFound { key: key.into() });
        }
        Ok((file, meta))
    }

    fn current(&self, key: &str) -> Result<Option<Metadata>> {
        match fs::metadata(self.path(key)) {
            Ok(m) if m.is_file() => Ok(Some(m)),
            Ok(_) => Ok(None),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(write_err(key)(e)),
        }
    }

    /// Put the fully written `tmp` in place of `key` if `cond` holds.
    fn commit(&self, key: &str, mut tmp: TempFile, cond: Cond<'_>) -> Result<ETag> {
        let dest = self.path(key);
        let lock = self.lock(key)?;
        let current = self.current(key)?;
        let holds = match cond {
            Cond::None => true,
            Cond::Absent => current.is_none(),
            Cond::Match(etag) => current.as_ref().map(etag_of).as_ref() == Some(etag),
        };
        if !holds {
            return Err(StorageError::PreconditionFailed { key: key.into() });
        }
        let meta = advance_mtime(&tmp.file, current.as_ref()).map_err(write_err(key))?;
        tmp.rename_to(&dest).map_err(write_err(key))?;
        drop(lock);
        tmp.file.sync_all().map_err(write_err(key))?;
        sync_dir(&dest).map_err(write_err(key))?;
        Ok(etag_of(&meta))
    }

    fn write_bytes(&self, key: &str, body: &[u8], cond: Cond<'_>) -> Result<ETag> {
        let mut tmp = TempFile::beside(&self.path(key)).map_err(write_err(key))?;
        tmp.write_synced(body).map_err(write_err(key))?;
        self.commit(key, tmp, cond)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key);
        let lock = self.lock(key)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(write_err(key)(e)),
        }
        drop(lock);
        sync_dir(&path).map_err(write_err(key))?;
        self.remove_empty_dirs(&path);
        Ok(())
    }

    /// Remove the now empty directories above a deleted object, up to the root. A writer that
    /// loses its directory this way recreates it (see `TempFile::beside`).
    fn remove_empty_dirs(&self, path: &Path) {
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.root || !d.starts_with(&self.root) || fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let start = match prefix.rfind('/') {
            Some(i) => self.root.join(&prefix[..i]),
            None => self.root.clone(),
        };
        let mut out = Vec::new();
        for entry in walkdir::WalkDir::new(&start).min_depth(1) {
            let entry = match entry {
                Ok(e) => e,
                Err(e) if e.io_error().map(io::Error::kind) == Some(io::ErrorKind::NotFound) => {
                    continue;
                }
                Err(e) => return Err(write_err(prefix)(e.into())),
            };
            if !entry.file_type().is_file() {
                continue;
            }
            let Some(key) = self.key_of(entry.path()) else {
                continue;
            };
            if !key.starts_with(prefix) {
                continue;
            }
            match entry.metadata() {
                Ok(meta) => out.push(object_meta(key, &meta)),
                Err(e) if e.io_error().map(io::Error::kind) == Some(io::ErrorKind::NotFound) => {}
                Err(e) => return Err(write_err(prefix)(e.into())),
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// The key of a file under the root, or `None` for temp files and stray names.
    fn key_of(&self, path: &Path) -> Option<String> {
        let rel = path.strip_prefix(&self.root).ok()?.to_str()?;
        (!rel.contains(RESERVED) && validate_key(rel).is_ok()).then(|| rel.to_string())
    }
}

/// fsync the directory of `path`; a directory already removed by a later delete is fine.
fn sync_dir(path: &Path) -> io::Result<()> {
    match atomic::fsync_parent(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn read_range(file: &File, size: u64, range: Range<u64>) -> io::Result<Bytes> {
    let end = range.end.min(size);
    if range.start >= end {
        return Ok(Bytes::new());
    }
    let mut buf = vec![0u8; (end - range.start) as usize];
    file.read_exact_at(&mut buf, range.start)?;
    Ok(buf.into())
}

#[async_trait::async_trait]
impl ObjectStore for LocalStore {
    async fn get(&self, key: &str) -> Result<Object> {
        validate_key(key)?;
        let k = key.to_string();
        self.run(key, move |s| {
            let (mut file, meta) = s.open_object(&k)?;
            let mut body = Vec::with_capacity(meta.len() as usize);
            file.read_to_end(&mut body).map_err(io_err(&k))?;
            let etag = etag_of(&meta);
            Ok(Object {
                body: body.into(),
                etag,
            })
        })
        .await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        validate_key(key)?;
        let k = key.to_string();
        self.run(key, move |s| {
            let (file, meta) = s.open_object(&k)?;
            read_range(&file, meta.len(), range).map_err(io_err(&k))
        })
        .await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        validate_key(key)?;
        let k = key.to_string();
        self.run(key, move |s| Ok(s.current(&k)?.map(|m| object_meta(k, &m))))
            .await
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<ETag> {
        validate_key(key)?;
        let k = key.to_string();
        self.run(key, move |s| s.write_bytes(&k, &body, Cond::None))
            .await
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<ETag> {
        validate_key(key)?;
        let k = key.to_string();
        self.run(key, move |s| s.write_bytes(&k, &body, Cond::Absent))
            .await
    }

    async fn put_if_match(&self, key: &str, body: Bytes, etag: &ETag) -> Result<ETag> {
        validate_key(key)?;
        let (k, etag) = (key.to_string(), etag.clone());
        self.run(key, move |s| s.write_bytes(&k, &body, Cond::Match(&etag)))
            .await
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<ETag> {
        validate_key(key)?;
        let (k, src) = (key.to_string(), path.to_path_buf());
        self.run(key, move |s| {
            let mut from = File::open(&src).map_err(write_err(&k))?;
            let mut tmp = TempFile::beside(&s.path(&k)).map_err(write_err(&k))?;
            tmp.copy_synced(&mut from).map_err(write_err(&k))?;
            s.commit(&k, tmp, Cond::None)
        })
        .await
    }

    async fn get_to_file(&self, key: &str, path: &Path) -> Result<u64> {
        validate_key(key)?;
        let (k, dest) = (key.to_string(), path.to_path_buf());
        self.run(key, move |s| {
            let (mut file, _) = s.open_object(&k)?;
            atomic::copy_into(&mut file, &dest).map_err(write_err(&k))
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        validate_prefix(prefix)?;
        let p = prefix.to_string();
        self.run(prefix, move |s| s.list(&p)).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        let k = key.to_string();
        self.run(key, move |s| s.delete(&k)).await
    }

    fn describe(&self) -> String {
        format!("file://{}", self.inner.root.display())
    }
}
