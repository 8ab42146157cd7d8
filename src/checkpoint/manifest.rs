//! The manifest: the complete description of one checkpoint, stored as
//! `checkpoints/<id>/manifest.json` after every chunk it names is in storage.
//!
//! Invariants of a manifest that passed [`Manifest::validate`]: every path is relative,
//! normalised and free of `..`, NUL and empty segments; paths are unique; every entry's parent is
//! a directory listed earlier (so no entry can be reached through a symlink or a file); every
//! file's chunk slices add up to its size. Restore relies on all of these before it writes.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

use super::CheckpointSummary;
use super::id::CheckpointId;

/// The manifest format this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Upper bound of any stored object's uncompressed size (4 MiB + 256 KiB): a chunk slice that
/// ends beyond it cannot be, and restore decompresses no object past it. The chunker's sizes
/// stay within it.
pub const MAX_OBJECT: usize = 4 * 1024 * 1024 + 256 * 1024;

/// The BLAKE3 hash of a chunk's uncompressed bytes; its object is `chunks/<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkHash(pub [u8; 32]);

impl ChunkHash {
    pub fn of(data: &[u8]) -> Self {
        ChunkHash(*blake3::hash(data).as_bytes())
    }
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        blake3::Hash::from_hex(s)
            .ok()
            .map(|h| ChunkHash(*h.as_bytes()))
    }
    /// The object key of this chunk.
    pub fn key(&self) -> String {
        format!("chunks/{}", self.to_hex())
    }
}

impl fmt::Debug for ChunkHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for ChunkHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for ChunkHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ChunkHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ChunkHash::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom("a chunk hash is 64 lowercase hex digits"))
    }
}

/// A slice `[offset, offset + len)` of a chunk's uncompressed bytes. Large files are whole
/// chunks in order; small files are slices of a shared pack chunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub hash: ChunkHash,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: u64,
    pub len: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Metadata every entry carries. `mode` holds the permission bits only (`& 0o7777`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub mode: u32,
    pub mtime_ns: i64,
    pub uid: u32,
    pub gid: u32,
}

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum EntryKind {
    Dir,
    File {
        size: u64,
        chunks: Vec<ChunkRef>,
        /// BLAKE3 of the whole content, recorded for small (packed) files.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<ChunkHash>,
    },
    Symlink {
        target: String,
    },
}

/// One directory, file or symlink under `env_dir`, by its `/`-separated relative path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    #[serde(flatten)]
    pub meta: Meta,
    #[serde(flatten)]
    pub kind: EntryKind,
}

/// Figures recorded with the checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub files: u64,
    pub bytes: u64,
    pub uploaded_bytes: u64,
    pub chunks_new: u64,
    pub freeze_ms: u64,
    /// Time from the start to the manifest write (the response reports the full time).
    #[serde(default)]
    pub duration_ms: u64,
}

/// The whole manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: CheckpointId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Fencing token of the lease held when the checkpoint was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    pub stats: Stats,
    /// Mode and mtime of `env_dir` itself.
    pub root: Meta,
    /// Parents before children.
    pub entries: Vec<Entry>,
}

impl Manifest {
    /// The object key of checkpoint `id`'s manifest.
    pub fn key(id: &CheckpointId) -> String {
        format!("checkpoints/{id}/manifest.json")
    }

    /// Parse and validate a stored manifest; the error says what is wrong with it.
    pub fn from_slice(id: &CheckpointId, body: &[u8]) -> Result<Self, String> {
        let m: Manifest =
            serde_json::from_slice(body).map_err(|e| format!("not valid JSON: {e}"))?;
        if &m.id != id {
            return Err(format!("it names checkpoint {} instead", m.id));
        }
        m.validate()?;
        Ok(m)
    }

    /// Check every invariant listed in the module header.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != FORMAT_VERSION {
            return Err(format!(
                "format {} is not supported (this version reads format {FORMAT_VERSION})",
                self.format
            ));
        }
        check_meta("(root)", &self.root)?;
        let mut seen: HashMap<&str, bool> = HashMap::with_capacity(self.entries.len());
        for e in &self.entries {
            check_path(&e.path)?;
            check_meta(&e.path, &e.meta)?;
            if let Some((parent, _)) = e.path.rsplit_once('/') {
                match seen.get(parent) {
                    Some(true) => {}
                    Some(false) => return Err(format!("{:?} is inside a non-directory", e.path)),
                    None => return Err(format!("{:?} comes before its directory", e.path)),
                }
            }
            check_kind(&e.path, &e.kind)?;
            if seen
                .insert(&e.path, matches!(e.kind, EntryKind::Dir))
                .is_some()
            {
                return Err(format!("{:?} is listed twice", e.path));
            }
        }
        Ok(())
    }

    /// The summary of this checkpoint (as `POST /checkpoint` answered, within the time it
    /// took to write the manifest).
    pub fn summary(&self) -> CheckpointSummary {
        CheckpointSummary {
            id: self.id.clone(),
            label: self.label.clone(),
            created_at: self.created_at,
            files: self.stats.files,
            bytes: self.stats.bytes,
            uploaded_bytes: self.stats.uploaded_bytes,
            chunks_new: self.stats.chunks_new,
            freeze_ms: self.stats.freeze_ms,
            duration_ms: self.stats.duration_ms,
        }
    }
}

/// A relative, normalised path: no leading `/`, no empty, `.` or `..` segment, no NUL.
pub fn check_path(path: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("path {path:?} {why}"));
    if path.is_empty() {
        return bad("is empty");
    }
    if path.starts_with('/') {
        return bad("is absolute");
    }
    if path.len() > 4096 || path.contains('\0') {
        return bad("is too long or has a NUL byte");
    }
    for seg in path.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return bad("has an empty, '.' or '..' segment");
        }
        if seg.len() > 255 {
            return bad("has a name longer than 255 bytes");
        }
    }
    Ok(())
}

fn check_meta(path: &str, m: &Meta) -> Result<(), String> {
    if m.mode & !0o7777 != 0 {
        return Err(format!(
            "{path:?} has mode {:o} beyond permission bits",
            m.mode
        ));
    }
    Ok(())
}

fn check_kind(path: &str, kind: &EntryKind) -> Result<(), String> {
    match kind {
        EntryKind::Dir => Ok(()),
        EntryKind::Symlink { target } => {
            if target.is_empty() || target.contains('\0') || target.len() > 4096 {
                return Err(format!("symlink {path:?} has an invalid target"));
            }
            Ok(())
        }
        EntryKind::File { size, chunks, .. } => {
            let mut total: u64 = 0;
            for c in chunks {
                let end = c.offset.checked_add(c.len);
                if c.len == 0 || end.is_none_or(|e| e > MAX_OBJECT as u64) {
                    return Err(format!("file {path:?} has an impossible chunk slice"));
                }
                total = total.saturating_add(c.len);
            }
            if total != *size {
                return Err(format!(
                    "file {path:?} has chunks of {total} bytes for a size of {size}"
                ));
            }
            Ok(())
        }
    }
}
