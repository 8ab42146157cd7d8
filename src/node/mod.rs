//! The node: one configured environment on this machine. It owns the storage handle, the lease,
//! the checkpoint engine and (while it owns the lease) the state database with its replication,
//! and it decides when the supervisor runs the stacks.
//!
//! Invariants:
//! - Stacks run, the state database is open and anything is written to storage only while the
//!   lease says this node is the owner ([`owner`] brings the environment up and down as the
//!   lease's role changes). Writes are also fenced by the lease epoch where they happen.
//! - Taking over from another node restores its state first: the state database from
//!   replication and env_dir from the latest checkpoint. A node that was itself the previous
//!   holder (epoch − 1) keeps its local state, which is at least as new as storage's.
//! - Checkpoint, restore, release and bring-up/down are serialised by one operation lock; a
//!   request that finds it taken is refused (409), never queued behind a long operation.

mod catalog;
mod events;
pub mod freezer;
mod ops;
mod overview;
mod owner;
mod procset;
mod restore;
mod timings;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::{Mutex, RwLock, mpsc, watch};

use crate::checkpoint::{CheckpointEngine, CheckpointError, CheckpointSummary, EngineOptions};
use crate::config::{Config, ProcessSpec};
use crate::datadir::DataDir;
use crate::feed::{Feed, FeedEvent};
use crate::lease::{LeaseError, LeaseHandle, Leaser, Role};
use crate::objstore::{self, DynStore, StorageError};
use crate::replication::{ReplicationError, ReplicationStatus, Replicator};
use crate::store::Store;
use crate::supervisor::{SupervisorError, SupervisorHandle};

pub use ops::{ReleaseReport, RestoreReport};
pub use overview::{LeaseOverview, NodeRole, Overview};
pub use procset::{
    Added, IntentChange, Operate, ReloadOptions, Reloaded, RemoveOptions, Removed, Replaced, Scaled,
};
use restore::environment_event;
pub use restore::{ENVIRONMENT, LastRestore, RestoreOutcome};
pub use timings::Timings;

/// Everything that can go wrong at the node level.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    #[error(transparent)]
    Database(#[from] crate::store::StoreError),
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    /// This node does not own the environment; `detail` says who does.
    #[error("{detail}")]
    NotOwner { detail: String },
    /// Another checkpoint, restore, release or takeover is under way.
    #[error("{what} is under way (since {since}); retry when it has finished")]
    Busy { what: &'static str, since: String },
    #[error("{0}")]
    Hook(String),
    #[error("there is no checkpoint yet; POST /checkpoint takes one")]
    NoCheckpoint,
    /// A process spec that is not valid; every problem is listed.
    #[error("the process spec has {} problem(s)", .0.len())]
    Invalid(Vec<crate::config::Problem>),
    #[error(
        "a stack named {name:?} exists already; change it with PUT /processes/{name}, or remove it first"
    )]
    Exists { name: String },
    #[error(
        "no stack named {name:?}; list the processes with GET /processes (a stack's instances are name-1, name-2, …)"
    )]
    UnknownStack { name: String },
    #[error("{} depend(s) on {name:?}; remove them first, or add ?force=true", dependants.join(", "))]
    HasDependants {
        name: String,
        dependants: Vec<String>,
    },
    /// A change made `If-Match` a revision the set has moved on from.
    #[error(
        "the process set is at revision {found}, not {expected} as If-Match says: someone changed it since; GET / (or GET /config) again, check the change still makes sense, and send it with If-Match: \"{found}\""
    )]
    Stale { expected: u64, found: u64 },
    /// A reload that changes settings this node keeps from its start.
    #[error(
        "{} cannot change while state-manager runs, so nothing was changed: reload without changing them, or write the new config to the node's config file and restart state-manager", fields.join(", ")
    )]
    NodeOnly { fields: Vec<String> },
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What `GET /` shows of an operation under way.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Operation {
    pub kind: OperationKind,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

/// The operations that hold the node's operation lock (one at a time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    Checkpoint,
    #[serde(rename = "checkpoint deletion")]
    CheckpointDeletion,
    Restore,
    Release,
    /// Bringing the environment up after this node became the owner.
    Takeover,
}

impl OperationKind {
    /// The word in the API and in a refusal ("a restore is under way").
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Checkpoint => "checkpoint",
            OperationKind::CheckpointDeletion => "checkpoint deletion",
            OperationKind::Restore => "restore",
            OperationKind::Release => "release",
            OperationKind::Takeover => "takeover",
        }
    }
}

/// The node's own state, published on a watch channel (cheap to read for `GET /`).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct NodeStatus {
    /// Stacks are up on this node (it owns the lease and brought the environment up).
    pub up: bool,
    pub operation: Option<Operation>,
    pub last_checkpoint: Option<CheckpointSummary>,
    /// The last failure to bring the environment up or take a scheduled checkpoint.
    pub last_error: Option<String>,
    /// How the last takeover went (this node becoming the owner).
    pub last_takeover: Option<Takeover>,
    /// How the last restore ended, or how one a crash interrupted was settled at start-up.
    pub last_restore: Option<LastRestore>,
    /// The revision of the process set, once this node loaded it from the state database.
    pub revision: Option<u64>,
}

/// A takeover: the epoch, whether local state was kept or restored from storage, and the
/// time of each step (database, env_dir, start).
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Takeover {
    pub epoch: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub kept_local_state: bool,
    pub timings: Timings,
}

/// The state database while this node owns the environment.
struct Db {
    store: Store,
    replicator: Option<Replicator>,
}

/// One configured environment. Shared as `Arc<Node>`.
pub struct Node {
    /// The node's config file as last applied (at start, or by a reload): its stacks and global
    /// settings make the process set; its storage, `node_id` and lease stay as at start.
    config: std::sync::RwLock<Arc<Config>>,
    specs: Vec<Arc<ProcessSpec>>,
    data_dir: DataDir,
    objects: DynStore,
    /// Where the node's own events go (storage health, restore outcomes).
    feed: Feed,
    /// Every request's outcome on `objects` (see `objstore::health`).
    storage_health: watch::Receiver<objstore::StorageHealth>,
    supervisor: SupervisorHandle,
    lease: LeaseHandle,
    engine: Arc<CheckpointEngine>,
    db: RwLock<Option<Db>>,
    ops: Mutex<()>,
    status: watch::Sender<NodeStatus>,
    replication: watch::Sender<Option<ReplicationStatus>>,
    persist: events::Persister,
    /// The process set as last loaded or changed (`None` until this node first owned it).
    set: std::sync::RwLock<Option<Arc<procset::SetView>>>,
    /// Held by each change of the set, from validation to the supervisor's answer.
    set_lock: Mutex<()>,
}

impl Node {
    /// Set up the environment of `config` and start following the lease: `specs` (registered
    /// with the supervisor, stopped) start once this node owns it. Fails only on local
    /// problems; storage trouble is retried.
    pub async fn start(
        config: Config,
        specs: Vec<Arc<ProcessSpec>>,
        data_dir: &Path,
        supervisor: SupervisorHandle,
        feed: Feed,
        durable_events: mpsc::UnboundedReceiver<FeedEvent>,
        fence_program: Option<PathBuf>,
    ) -> Result<Arc<Node>, NodeError> {
        let data_dir = std::path::absolute(data_dir).map_err(|source| NodeError::Io {
            path: data_dir.into(),
            source,
        })?;
        let data_dir = DataDir::new(data_dir);
        let objects = objstore::open(config.storage.as_ref(), data_dir.root()).await?;
        let (objects, storage_health) = objstore::health::watched(objects);
        tokio::spawn(events::publish_storage_changes(
            storage_health.clone(),
            feed.clone(),
        ));
        let env_dir = data_dir.env_dir(&config);
        let state_dir = data_dir.checkpoint_state();
        for dir in [&env_dir, &state_dir] {
            std::fs::create_dir_all(dir).map_err(|source| NodeError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        let opts = EngineOptions::from_config(&config.checkpoint);
        let engine = Arc::new(CheckpointEngine::new(
            objects.clone(),
            env_dir,
            state_dir,
            opts,
        )?);
        let node_id = crate::lease::node_id(config.node_id.as_deref(), data_dir.root())?;
        let watchdog = match fence_program {
            Some(program) => Some(start_fence(&data_dir, &config, program)?),
            None => None,
        };
        let id_file = data_dir.instance_id_file();
        let instance = crate::lease::instance_id(&id_file).map_err(|source| NodeError::Io {
            path: id_file,
            source,
        })?;
        let lease = Leaser::new(objects.clone(), node_id.clone(), &config.lease)
            .with_watchdog(watchdog)
            .with_instance(Some(instance))
            .spawn()?;
        tracing::info!(node = %node_id, storage = %objects.describe(), "environment configured; looking at the lease");
        let node = Arc::new(Node {
            config: std::sync::RwLock::new(Arc::new(config)),
            specs,
            data_dir,
            objects,
            feed,
            storage_health,
            supervisor,
            lease,
            engine,
            db: RwLock::new(None),
            ops: Mutex::new(()),
            status: watch::channel(NodeStatus::default()).0,
            replication: watch::channel(None).0,
            persist: events::Persister::spawn(durable_events),
            set: std::sync::RwLock::new(None),
            set_lock: Mutex::new(()),
        });
        tokio::spawn(owner::follow(node.clone()));
        if let Some(every) = node.config().checkpoint.interval {
            tokio::spawn(ops::scheduled(Arc::downgrade(&node), every.get()));
        }
        Ok(node)
    }

    pub fn node_id(&self) -> &str {
        self.lease.node_id()
    }
    pub fn role(&self) -> Role {
        self.lease.role()
    }
    pub fn lease(&self) -> &LeaseHandle {
        &self.lease
    }
    pub fn status(&self) -> watch::Receiver<NodeStatus> {
        self.status.subscribe()
    }
    /// Replication's status while the database is open here (`None` otherwise).
    pub fn replication(&self) -> watch::Receiver<Option<ReplicationStatus>> {
        self.replication.subscribe()
    }
    /// The config file as last applied.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    pub fn storage(&self) -> String {
        self.objects.describe()
    }
    /// Whether storage works, as this node's last request found it.
    pub fn storage_health(&self) -> objstore::StorageHealth {
        self.storage_health.borrow().clone()
    }

    /// The open state database, while this node owns the environment.
    pub async fn store(&self) -> Option<Store> {
        self.db.read().await.as_ref().map(|d| d.store.clone())
    }

    fn set_status(&self, f: impl FnOnce(&mut NodeStatus)) {
        self.status.send_modify(f);
    }

    /// Take the operation lock for `kind`, or say what holds it.
    fn begin(&self, kind: OperationKind) -> Result<OpGuard<'_>, NodeError> {
        let guard = self.ops.try_lock().map_err(|_| {
            let current = self.status.borrow().operation.clone();
            NodeError::Busy {
                what: current
                    .as_ref()
                    .map_or("another operation", |o| o.kind.as_str()),
                since: current
                    .map_or_else(|| "moments ago".into(), |o| crate::lease::rfc3339(o.since)),
            }
        })?;
        self.set_status(|s| {
            s.operation = Some(Operation {
                kind,
                since: OffsetDateTime::now_utc(),
            })
        });
        Ok(OpGuard {
            node: self,
            _guard: guard,
        })
    }

    fn is_up(&self) -> bool {
        self.status.borrow().up
    }

    /// Refuse unless this node owns the environment and has it up.
    fn require_owner(&self) -> Result<u64, NodeError> {
        match (self.lease.role(), self.is_up()) {
            (Role::Owner { epoch, .. }, true) => Ok(epoch),
            (Role::Owner { .. }, false) => Err(NodeError::NotOwner {
                detail: "this node has just taken the lease and is still bringing the environment up; retry in a moment".into(),
            }),
            (role, _) => Err(NodeError::NotOwner { detail: not_owner(self.node_id(), &role) }),
        }
    }

    /// Stop everything for good (service shutdown): as owner, stop the stacks, take a final
    /// checkpoint, flush replication and release the lease so a successor can start at once.
    pub async fn shutdown(&self) {
        if self.is_up() {
            match self.release(true).await {
                Ok(r) => tracing::info!(epoch = r.released_epoch, "released the lease at shutdown"),
                Err(e) => tracing::warn!("could not hand over cleanly at shutdown: {e}"),
            }
        }
        let _ = self.lease.stop(false).await;
    }
}

/// The fence process's page under `data_dir`, and the process started from `program`.
fn start_fence(
    data_dir: &DataDir,
    config: &Config,
    program: PathBuf,
) -> Result<Arc<crate::lease::Watchdog>, NodeError> {
    let timing = crate::lease::Timing::new(&config.lease)?;
    let path = data_dir.fence_page();
    let watchdog = crate::lease::Watchdog::create(&path, timing.fence_lead, timing.renew_every)
        .map_err(|source| NodeError::Io { path, source })?;
    let watchdog = Arc::new(watchdog);
    watchdog.start_process(program);
    Ok(watchdog)
}

/// Holds the operation lock; clears the operation from the status when dropped.
struct OpGuard<'a> {
    node: &'a Node,
    _guard: tokio::sync::MutexGuard<'a, ()>,
}

impl Drop for OpGuard<'_> {
    fn drop(&mut self) {
        self.node.set_status(|s| s.operation = None);
    }
}

/// Words for a refusal on a node that is not the owner, naming who is.
pub fn not_owner(node_id: &str, role: &Role) -> String {
    match role {
        Role::Standby { lease: Some(l) } if !l.released => format!(
            "node {node_id} is a standby: the environment is owned by {} (epoch {}) until {}; send this to the owner",
            l.holder,
            l.epoch,
            crate::lease::rfc3339(l.expires_at)
        ),
        Role::Standby { .. } => format!(
            "node {node_id} is a standby and nobody owns the environment now; POST /acquire-lease to take it"
        ),
        Role::Released { epoch } => format!(
            "node {node_id} released the lease (epoch {epoch}); POST /acquire-lease to take it back"
        ),
        Role::Lost { epoch, .. } => {
            format!("node {node_id} lost the lease (epoch {epoch}) and is a standby now")
        }
        Role::Starting => {
            format!("node {node_id} has not looked at the lease yet; retry in a moment")
        }
        Role::Owner { .. } => format!("node {node_id} owns the environment"),
    }
}
