//! The state database: one SQLite file in WAL mode holding lifecycle events, process runs, node
//! facts, the checkpoint catalog and the process set with its intents, owned by one writer thread.
//!
//! Invariants:
//! - Only the writer thread touches the connection; async callers send it closures through
//!   [`Store::call`] and await the reply, so SQLite never blocks the async runtime.
//! - The schema is the SQL files in `migrations/`, applied in order at open and tracked by
//!   `PRAGMA user_version`; a database written by a newer binary is refused.
//! - With [`Checkpoints::Manual`] (the default) nothing checkpoints the WAL except an explicit
//!   call: no auto-checkpoint, no checkpoint when the connection closes. Replication relies on
//!   this to ship every committed WAL frame before the WAL is reset.
//! - Commits use `synchronous=FULL`: the WAL is fsynced before a commit is acknowledged, so after
//!   a power loss the local database never holds less than what replication already shipped.
//!   The cost is one fsync per transaction, which batching ([`Store::insert_events`]) amortises.

mod checkpoints;
mod codec;
mod events;
mod facts;
mod migrations;
mod procset;
mod runs;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::oneshot;

pub use checkpoints::CatalogEntry;
pub use events::{MAX_PAGE, StoredEvent};
pub use facts::{fact_get, fact_set};
pub use migrations::LATEST_VERSION;
pub use procset::{Intent, Origin, ProcessSet, SetChange, StoredStack};
pub use runs::{Run, RunEnd, RunStart};

/// Errors of the state database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the state database {path} cannot use WAL mode (journal mode is {mode:?}); put it on a local file system"
    )]
    NotWal { path: PathBuf, mode: String },
    #[error(
        "the state database {path} has schema version {found}, newer than the {supported} this binary knows: a newer state-manager wrote it; run that version or restore an older database"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: i64,
        name: &'static str,
        source: rusqlite::Error,
    },
    #[error("state database query failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the state database holds an invalid value in {column}: {value:?}")]
    Corrupt { column: &'static str, value: String },
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A change that expected the process set at one revision found it at another.
    #[error(
        "the process set is at revision {found}, not {expected}: another change came first; read it again (GET /) and retry"
    )]
    RevisionMismatch { expected: u64, found: u64 },
    #[error("cannot start the state database thread: {0}")]
    Thread(std::io::Error),
    #[error("the state database is closed")]
    Closed,
    #[error("a state database call panicked; the database is unchanged by it")]
    Aborted,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Who checkpoints the WAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Checkpoints {
    /// Only explicit calls (replication decides when). The WAL grows until then.
    #[default]
    Manual,
    /// SQLite's own auto-checkpoint and checkpoint on close: for a store that is not replicated.
    Auto,
}

/// How to open the store.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreOptions {
    pub checkpoints: Checkpoints,
}

type Job = Box<dyn FnOnce(&mut Connection) + Send + 'static>;

/// WAL frames after which a commit wakes replication early (64 MiB of 4 KiB pages): beyond the
/// size at which replication resets the WAL, so an early sync ends with a reset. It bounds the WAL
/// under a burst; set lower, the resets it causes cost single-row commits more than they save.
pub const EARLY_SYNC_PAGES: i32 = 16384;

/// A cheap, cloneable handle to the state database's writer thread.
#[derive(Clone)]
pub struct Store {
    tx: std::sync::mpsc::Sender<writer::Message>,
    path: PathBuf,
    db_file: Arc<File>,
    wal_grew: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Open (creating if needed) the database at `path` with manual checkpoints, and migrate it.
    pub async fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(path, StoreOptions::default()).await
    }

    /// Open with explicit options.
    pub async fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        let wal_grew = Arc::new(tokio::sync::Notify::new());
        let (tx, db_file) = writer::start(path.clone(), options, wal_grew.clone()).await?;
        Ok(Store {
            tx,
            path,
            db_file,
            wal_grew,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A read-only handle on the database file, for replication to read it directly. Use this
    /// instead of opening the file: closing any descriptor of the file drops every POSIX lock
    /// this process holds on it, including SQLite's. This handle is closed only after the
    /// connection (the writer thread keeps a clone until then). Read it positionally
    /// (`FileExt::read_at`): clones share one cursor.
    pub fn db_file(&self) -> &Arc<File> {
        &self.db_file
    }

    /// Notified after a commit that leaves at least [`EARLY_SYNC_PAGES`] frames in the WAL
    /// (manual checkpoints only), so replication can ship a busy WAL before its interval ends
    /// and keep it small.
    pub fn wal_grew(&self) -> &Arc<tokio::sync::Notify> {
        &self.wal_grew
    }

    /// Run `f` on the writer thread and return its result. `f` must not block for long: every
    /// other caller waits behind it.
    pub async fn call<F, R, E>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&mut Connection) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = reply.send(f(conn));
        });
        self.tx
            .send(writer::Message::Run(job))
            .map_err(|_| E::from(StoreError::Closed))?;
        // A dropped reply without a value means the closure panicked (the thread survives).
        rx.await.map_err(|_| E::from(StoreError::Aborted))?
    }

    /// Close the connection and stop the writer thread. Other handles see [`StoreError::Closed`].
    pub async fn close(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(writer::Message::Close(reply)).is_err() {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }

    /// `PRAGMA integrity_check`: `Ok(())` or the problems SQLite reports.
    pub async fn integrity_check(&self) -> Result<Vec<String>> {
        self.call(|conn| integrity_check(conn)).await
    }
}

/// Run `PRAGMA integrity_check` on a connection; an empty list means the database is sound.
pub fn integrity_check(conn: &Connection) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    conn.pragma_query(None, "integrity_check", |row| {
        let line: String = row.get(0)?;
        if line != "ok" {
            problems.push(line);
        }
        Ok(())
    })?;
    Ok(problems)
}
