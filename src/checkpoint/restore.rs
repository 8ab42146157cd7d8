//! Restoring a checkpoint: load and validate the manifest (typed `NotFound`/`Unreadable` before
//! anything is touched), rebuild the tree in a staging directory beside `env_dir` (chunks
//! fetched in parallel, each verified against its hash, sizes checked, metadata applied,
//! synced), then swap it in (`swap.rs`). Until the swap, `env_dir` is not written to at all.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::CheckpointEngine;
use super::error::{CheckpointError, Result};
use super::id::CheckpointId;
use super::journal::{Journal, Phase, TreeId};
use super::landing::{Landing, Target};
use super::local::{IndexEntry, LocalState};
use super::manifest::{ChunkHash, EntryKind, Manifest};
use super::stage::trustworthy;
use super::swap::{SwapPaths, remove_trash, swap_in};
use super::tree::SafeRoot;
use super::walk::stat_of;

/// What a finished restore reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreSummary {
    pub restored: CheckpointId,
    pub files: u64,
    pub bytes: u64,
    pub chunks_fetched: u64,
    pub duration_ms: u64,
}

/// What building the tree in staging took.
struct Built {
    chunks: u64,
    /// Creating the tree and writing every chunk into it.
    fetch: std::time::Duration,
    /// Checking sizes, applying metadata and syncing the filesystem.
    sync: std::time::Duration,
}

impl CheckpointEngine {
    /// Fetch and validate checkpoint `id`'s manifest. `InvalidId`/`NotFound`/`Unreadable` mean
    /// the restore cannot start; nothing has been touched.
    pub async fn load_manifest(&self, id: &str) -> Result<Manifest> {
        let id = CheckpointId::parse(id)?;
        let obj = match self.store.get(&Manifest::key(&id)).await {
            Ok(obj) => obj,
            Err(e) if e.is_not_found() => {
                return Err(CheckpointError::NotFound { id: id.to_string() });
            }
            Err(e) => return Err(e.into()),
        };
        Manifest::from_slice(&id, &obj.body).map_err(|reason| CheckpointError::Unreadable {
            id: id.to_string(),
            reason,
        })
    }

    /// Replace `env_dir` with the tree `manifest` describes. On error `env_dir` is as it was.
    /// The caller stops the writers first. A crash at any point leaves `env_dir` whole (the old
    /// tree or the new one) and [`CheckpointEngine::recover`] reports which.
    pub async fn restore(&self, manifest: &Manifest) -> Result<RestoreSummary> {
        self.restore_journaled(manifest, false).await
    }

    /// [`CheckpointEngine::restore`] for a caller that runs restore hooks after it: the
    /// journal stays at `swapped` until [`CheckpointEngine::end_restore`], so a crash during
    /// the hooks is reported as a completed restore whose hooks are pending.
    pub async fn restore_before_hooks(&self, manifest: &Manifest) -> Result<RestoreSummary> {
        self.restore_journaled(manifest, true).await
    }

    async fn restore_journaled(&self, manifest: &Manifest, hooks: bool) -> Result<RestoreSummary> {
        manifest
            .validate()
            .map_err(|reason| CheckpointError::Unreadable {
                id: manifest.id.to_string(),
                reason,
            })?;
        let _busy = self.busy()?;
        let started = Instant::now();
        let paths = SwapPaths::new(&self.env_dir, &self.state_dir);
        let mut journal = self.journal_building(&manifest.id, hooks).await?;
        let built = match self.build(&paths, manifest).await {
            Ok(b) => b,
            Err(e) => {
                let _ = tokio::task::spawn_blocking(move || abandon(&paths)).await;
                return Err(e);
            }
        };
        let (state_dir, m) = (self.state_dir.clone(), manifest.clone());
        // The journal, the swap itself and the file index of the restored tree.
        let swapping = Instant::now();
        let old_tree = tokio::task::spawn_blocking(move || {
            let new_tree = TreeId::of(&paths.staging)?.unwrap_or(TreeId { dev: 0, ino: 0 });
            journal.write(&state_dir, Phase::Swapping { new_tree })?;
            let old_tree = swap_in(&paths).inspect_err(|_| abandon(&paths))?;
            // From here on env_dir holds the new tree; the journal's `swapping` already says
            // so through the inode, so failing to advance it is not a failed restore.
            let advanced = match hooks {
                true => journal.write(&state_dir, Phase::Swapped),
                false => Journal::remove(&state_dir),
            };
            if let Err(e) = advanced {
                tracing::warn!(error = %e, "cannot update the restore journal after the swap");
            }
            remember_restored(&paths.env_dir, &state_dir, &m);
            Ok::<_, CheckpointError>(old_tree)
        })
        .await??;
        if let Some(old) = old_tree {
            tokio::task::spawn_blocking(move || remove_trash(&old));
        }
        tracing::info!(
            id = %manifest.id,
            chunks = built.chunks,
            fetch_ms = built.fetch.as_millis() as u64,
            sync_ms = built.sync.as_millis() as u64,
            swap_ms = swapping.elapsed().as_millis() as u64,
            "checkpoint restored"
        );
        Ok(RestoreSummary {
            restored: manifest.id.clone(),
            files: manifest.stats.files,
            bytes: manifest.stats.bytes,
            chunks_fetched: built.chunks,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Build the whole tree in staging.
    async fn build(&self, paths: &SwapPaths, m: &Manifest) -> Result<Built> {
        let started = Instant::now();
        let (staging, manifest) = (paths.staging.clone(), Arc::new(m.clone()));
        let mf = manifest.clone();
        let root = tokio::task::spawn_blocking(move || create_skeleton(&staging, &mf)).await??;
        let root = Arc::new(root);
        let landing = Arc::new(Landing::new());
        let jobs = chunk_targets(&manifest);
        let chunks = jobs.len() as u64;
        futures::stream::iter(jobs)
            .map(|(hash, targets)| self.fetch_chunk(root.clone(), landing.clone(), hash, targets))
            .buffer_unordered(self.opts.concurrency)
            .try_collect::<()>()
            .await?;
        let fetch = started.elapsed();
        tokio::task::spawn_blocking(move || finalize(&root, &manifest)).await??;
        Ok(Built {
            chunks,
            fetch,
            sync: started.elapsed() - fetch,
        })
    }

    async fn fetch_chunk(
        &self,
        root: Arc<SafeRoot>,
        landing: Arc<Landing>,
        hash: ChunkHash,
        targets: Vec<Target>,
    ) -> Result<()> {
        let body = match self.store.get(&hash.key()).await {
            Ok(obj) => obj.body,
            Err(e) if e.is_not_found() => {
                return Err(CheckpointError::MissingChunk {
                    hash: hash.to_hex(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        tokio::task::spawn_blocking(move || landing.write(&root, &hash, &body, &targets)).await?
    }
}

/// A restore failed before its swap, or its swap failed and was undone: remove the staging tree
/// and the journal. If `env_dir` is missing (an undo that failed too) both stay, for
/// [`CheckpointEngine::recover`] to finish the job at the next start.
fn abandon(paths: &SwapPaths) {
    if !paths.env_dir.exists() {
        return;
    }
    let _ = std::fs::remove_dir_all(&paths.staging);
    if let Err(e) = Journal::remove(&paths.state_dir) {
        tracing::warn!(error = %e, "cannot remove the restore journal of a failed restore");
    }
}

/// Group every file slice by chunk, so each chunk is fetched once.
fn chunk_targets(m: &Manifest) -> Vec<(ChunkHash, Vec<Target>)> {
    let mut by_chunk: HashMap<ChunkHash, Vec<Target>> = HashMap::new();
    for e in &m.entries {
        let EntryKind::File { chunks, .. } = &e.kind else {
            continue;
        };
        let mut file_offset = 0;
        for c in chunks {
            by_chunk.entry(c.hash).or_default().push(Target {
                path: e.path.clone(),
                file_offset,
                chunk_offset: c.offset,
                len: c.len,
            });
            file_offset += c.len;
        }
    }
    by_chunk.into_iter().collect()
}

/// Create the staging root, every directory, symlink and (empty) file.
fn create_skeleton(staging: &std::path::Path, m: &Manifest) -> Result<SafeRoot> {
    if staging.exists() {
        std::fs::remove_dir_all(staging).map_err(CheckpointError::io_at("remove", staging))?;
    }
    if let Some(parent) = staging.parent() {
        std::fs::create_dir_all(parent).map_err(CheckpointError::io_at("create", parent))?;
    }
    std::fs::create_dir(staging).map_err(CheckpointError::io_at("create", staging))?;
    let root = SafeRoot::open(staging)?;
    for e in &m.entries {
        match &e.kind {
            EntryKind::Dir => root.mkdir(&e.path)?,
            EntryKind::Symlink { target } => root.symlink(&e.path, target)?,
            EntryKind::File { .. } => drop(root.create_file(&e.path)?),
        }
    }
    Ok(root)
}

/// Check sizes, apply metadata (directories last, deepest first), sync the filesystem.
fn finalize(root: &SafeRoot, m: &Manifest) -> Result<()> {
    for e in &m.entries {
        match &e.kind {
            EntryKind::File { size, .. } => {
                let actual = root
                    .open_file(&e.path, false)?
                    .metadata()
                    .map(|md| md.len())
                    .unwrap_or(u64::MAX);
                if actual != *size {
                    return Err(CheckpointError::SizeMismatch {
                        path: e.path.clone(),
                        expected: *size,
                        actual,
                    });
                }
                root.set_meta(Some(&e.path), &e.meta, false)?;
            }
            EntryKind::Symlink { .. } => root.set_symlink_meta(&e.path, &e.meta)?,
            EntryKind::Dir => {}
        }
    }
    for e in m.entries.iter().rev().filter(|e| e.kind == EntryKind::Dir) {
        root.set_meta(Some(&e.path), &e.meta, true)?;
    }
    root.set_meta(None, &m.root, true)?;
    nix::unistd::syncfs(root.fd())
        .map_err(|e| CheckpointError::io("sync", std::path::Path::new("staging"), e.into()))
}

/// Index the restored files so the next checkpoint does not read them again.
fn remember_restored(env_dir: &std::path::Path, state_dir: &std::path::Path, m: &Manifest) {
    let mut local = LocalState::load(state_dir);
    let now = super::stage::now_ns();
    local.files.clear();
    for e in &m.entries {
        let EntryKind::File {
            chunks,
            content,
            size,
        } = &e.kind
        else {
            continue;
        };
        let Ok(md) = std::fs::symlink_metadata(env_dir.join(&e.path)) else {
            continue;
        };
        let stat = stat_of(&md);
        let entry = IndexEntry {
            stat,
            racy: !trustworthy(&stat, *size, now),
            chunks: chunks.clone(),
            content: *content,
        };
        local.files.insert(e.path.clone(), entry);
        local.known.extend(chunks.iter().map(|c| c.hash));
    }
    if let Err(e) = std::fs::create_dir_all(state_dir)
        .map_err(CheckpointError::io_at("create", state_dir))
        .and_then(|_| local.save(state_dir))
    {
        tracing::warn!(error = %e, "cannot save the checkpoint index after a restore");
    }
}
