//! The writer thread: opens and configures the one connection, migrates the schema, then runs the
//! closures callers send until the last handle is dropped or the store is closed.

use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use super::{Checkpoints, Job, Result, StoreError, StoreOptions, migrations};

/// Bytes a restarted WAL file is cut back to (manual checkpoints only).
const WAL_SIZE_LIMIT: i64 = 128 << 20;

/// What the handle sends to the thread.
pub(super) enum Message {
    Run(Job),
    Close(oneshot::Sender<Result<()>>),
}

/// Start the thread and wait until the database is open and migrated. Returns the channel and
/// the read-only handle on the database file (see `Store::db_file`).
pub(super) async fn start(
    path: PathBuf,
    options: StoreOptions,
    wal_grew: Arc<tokio::sync::Notify>,
) -> Result<(mpsc::Sender<Message>, Arc<File>)> {
    let (tx, rx) = mpsc::channel::<Message>();
    let (ready_tx, ready_rx) = oneshot::channel();
    let name = format!("sqlite-{}", file_name(&path));
    std::thread::Builder::new()
        .name(name)
        .spawn(move || match open(&path, options, Some(wal_grew)) {
            Ok((conn, file)) => {
                let _ = ready_tx.send(Ok(file.clone()));
                serve(conn, rx);
                // Only now, with the connection closed, may the descriptor close.
                drop(file);
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        })
        .map_err(StoreError::Thread)?;
    let file = ready_rx.await.map_err(|_| StoreError::Aborted)??;
    Ok((tx, file))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Open the file, switch to WAL, set durability and checkpoint policy, apply migrations.
pub(super) fn open(
    path: &Path,
    options: StoreOptions,
    wal_grew: Option<Arc<tokio::sync::Notify>>,
) -> Result<(Connection, Arc<File>)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            what: "create the directory of the state database",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let open_err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    // 0600 before SQLite opens it: SQLite gives the WAL and SHM files the database's mode.
    for p in [
        path.to_path_buf(),
        companion(path, "-wal"),
        companion(path, "-shm"),
    ] {
        if p == path || p.exists() {
            crate::datadir::private_file(&p).map_err(|source| StoreError::Io {
                what: "make private (0600) the state database",
                path: p.clone(),
                source,
            })?;
        }
    }
    let mut conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
    configure(&mut conn, path, options, wal_grew).map_err(|e| match e {
        StoreError::Sqlite(source) => open_err(source),
        other => other,
    })?;
    migrations::apply(&conn, path)?;
    let file = File::open(path).map_err(|source| StoreError::Io {
        what: "open for reading the state database",
        path: path.to_path_buf(),
        source,
    })?;
    Ok((conn, Arc::new(file)))
}

fn configure(
    conn: &mut Connection,
    path: &Path,
    options: StoreOptions,
    wal_grew: Option<Arc<tokio::sync::Notify>>,
) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::NotWal {
            path: path.to_path_buf(),
            mode,
        });
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    if options.checkpoints == Checkpoints::Manual {
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // A WAL reused after a checkpoint keeps its largest size; after a burst (or an outage
        // of storage) cut it back to this when it restarts.
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        // Registered after `wal_autocheckpoint`, which would replace it.
        if let Some(notify) = wal_grew {
            conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
                if pages >= super::EARLY_SYNC_PAGES {
                    notify.notify_one();
                }
                Ok(())
            }))?;
        }
    }
    Ok(())
}

/// Run jobs in order. A panicking job loses only its own reply; an open transaction it left
/// behind is rolled back so the next job starts clean.
fn serve(mut conn: Connection, rx: mpsc::Receiver<Message>) {
    while let Ok(message) = rx.recv() {
        match message {
            Message::Run(job) => {
                if catch_unwind(AssertUnwindSafe(|| job(&mut conn))).is_err() {
                    tracing::error!("a state database call panicked");
                    if !conn.is_autocommit() {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                }
            }
            Message::Close(reply) => {
                match conn.close() {
                    Ok(()) => {
                        let _ = reply.send(Ok(()));
                    }
                    Err((_conn, e)) => {
                        let _ = reply.send(Err(StoreError::Sqlite(e)));
                    }
                }
                return;
            }
        }
    }
}

/// `path` with `suffix` appended to its file name (`state.db` → `state.db-wal`).
fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    s.into()
}
