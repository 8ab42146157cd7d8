//! Watched files: a change restarts the process gracefully.
//!
//! The parent directory is watched rather than the file, so an editor that writes a new file and
//! renames it over the old one (a new inode) is seen, and the watch survives it. Events are
//! debounced: a burst of writes, or temp-file + rename, restarts the process once.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Quiet time after the last change before the restart is requested.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// Keeps the watch alive; dropping it stops watching.
pub struct WatchGuard {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Watch `files` (relative ones against `base`); send `name` on `fire` once per settled change.
pub fn watch(
    name: Arc<str>,
    files: &[PathBuf],
    base: &Path,
    fire: mpsc::UnboundedSender<Arc<str>>,
) -> notify::Result<WatchGuard> {
    let targets: Vec<PathBuf> = files
        .iter()
        .map(|f| {
            if f.is_absolute() {
                f.clone()
            } else {
                base.join(f)
            }
        })
        .collect();
    let names: HashSet<(PathBuf, OsString)> = targets
        .iter()
        .filter_map(|t| Some((t.parent()?.to_path_buf(), t.file_name()?.to_os_string())))
        .collect();
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let interesting = names.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        if matches!(ev.kind, EventKind::Access(_)) {
            return;
        }
        let hit = ev.paths.iter().any(|p| {
            matches!((p.parent(), p.file_name()), (Some(d), Some(n)) if interesting.contains(&(d.to_path_buf(), n.to_os_string())))
        });
        if hit {
            let _ = raw_tx.send(());
        }
    })?;
    let dirs: HashSet<&PathBuf> = names.iter().map(|(d, _)| d).collect();
    for dir in dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    let task = tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, raw_rx.recv()).await {}
            if fire.send(name.clone()).is_err() {
                break;
            }
        }
    });
    Ok(WatchGuard {
        _watcher: watcher,
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rename_over_the_file_fires_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app.conf");
        std::fs::write(&file, "v1").unwrap();
        std::fs::write(dir.path().join("other"), "x").unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _g = watch("p".into(), &[PathBuf::from("app.conf")], dir.path(), tx).unwrap();
        // Unrelated file: no fire.
        std::fs::write(dir.path().join("other"), "y").unwrap();
        // Editor-style replace: write a temp file, rename it over the watched one.
        let tmp = dir.path().join(".app.conf.swp");
        std::fs::write(&tmp, "v2").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .unwrap();
        assert_eq!(got.as_deref(), Some("p"));
        // Settled: nothing more arrives within several debounce periods.
        assert!(tokio::time::timeout(DEBOUNCE * 4, rx.recv()).await.is_err());
        // And the watch survives the rename.
        std::fs::write(&file, "v3").unwrap();
        let again = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .unwrap();
        assert_eq!(again.as_deref(), Some("p"));
    }
}
