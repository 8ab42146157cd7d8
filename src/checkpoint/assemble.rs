//! Turning a checkpoint's plan and what was read into its manifest and the next local index.

use std::collections::HashMap;

use time::OffsetDateTime;

use super::error::{CheckpointError, Result};
use super::id::CheckpointId;
use super::local::IndexEntry;
use super::manifest::{ChunkHash, ChunkRef, Entry, EntryKind, FORMAT_VERSION, Manifest, Stats};
use super::stage::{Plan, trustworthy};
use super::stager::FilePlan;
use super::upload::{FileChunks, UploadStats};
use super::walk::ScanKind;

/// The manifest fields that do not come from the tree.
pub struct Header {
    pub id: CheckpointId,
    pub created_at: OffsetDateTime,
    pub label: Option<String>,
    pub epoch: Option<u64>,
}

/// Every chunk a manifest refers to (with repeats).
pub fn referenced(m: &Manifest) -> impl Iterator<Item = ChunkHash> + '_ {
    m.entries.iter().flat_map(|e| match &e.kind {
        EntryKind::File { chunks, .. } => chunks.iter().map(|c| c.hash).collect::<Vec<_>>(),
        _ => Vec::new(),
    })
}

pub fn build_manifest(
    header: Header,
    plan: &Plan,
    files: &HashMap<usize, FileChunks>,
    upload: UploadStats,
    freeze_ms: u64,
) -> Result<Manifest> {
    let mut stats = Stats {
        uploaded_bytes: upload.uploaded_bytes,
        chunks_new: upload.chunks_new,
        freeze_ms,
        ..Stats::default()
    };
    let mut entries = Vec::with_capacity(plan.entries.len());
    for (n, e) in plan.entries.iter().enumerate() {
        let kind = match (&e.kind, &plan.files[n]) {
            (ScanKind::Dir, _) => EntryKind::Dir,
            (ScanKind::Symlink(t), _) => EntryKind::Symlink { target: t.clone() },
            (ScanKind::File, Some(FilePlan::Vanished)) => continue,
            (ScanKind::File, Some(FilePlan::Reuse(ix))) => {
                file_kind(ix.stat.size, &ix.chunks, ix.content)
            }
            (ScanKind::File, _) => {
                let fc = files.get(&n).ok_or_else(|| CheckpointError::Task {
                    reason: format!("no chunks were produced for {:?}", e.path),
                })?;
                file_kind(fc.size, &fc.chunks, fc.content)
            }
        };
        if let EntryKind::File { size, .. } = &kind {
            stats.files += 1;
            stats.bytes += size;
        }
        entries.push(Entry {
            path: e.path.clone(),
            meta: e.meta,
            kind,
        });
    }
    let manifest = Manifest {
        format: FORMAT_VERSION,
        id: header.id,
        label: header.label,
        created_at: header.created_at,
        epoch: header.epoch,
        stats,
        root: plan.root,
        entries,
    };
    manifest
        .validate()
        .map_err(|reason| CheckpointError::Task {
            reason: format!("the new manifest is inconsistent: {reason}"),
        })?;
    Ok(manifest)
}

fn file_kind(size: u64, chunks: &[ChunkRef], content: Option<ChunkHash>) -> EntryKind {
    EntryKind::File {
        size,
        chunks: chunks.to_vec(),
        content,
    }
}

/// The index after this checkpoint: reused entries as they were, read files unless racy.
pub fn new_index(plan: &Plan, files: &HashMap<usize, FileChunks>) -> HashMap<String, IndexEntry> {
    let mut index = HashMap::new();
    for (n, e) in plan.entries.iter().enumerate() {
        let entry = match &plan.files[n] {
            Some(FilePlan::Reuse(ix)) => ix.clone(),
            Some(FilePlan::Read { .. } | FilePlan::Spooled { .. } | FilePlan::Chunked { .. }) => {
                match files.get(&n) {
                    Some(fc) => IndexEntry {
                        stat: e.stat,
                        racy: !trustworthy(&e.stat, fc.size, plan.scanned_at_ns),
                        chunks: fc.chunks.clone(),
                        content: fc.content,
                    },
                    None => continue,
                }
            }
            _ => continue,
        };
        index.insert(e.path.clone(), entry);
    }
    index
}
