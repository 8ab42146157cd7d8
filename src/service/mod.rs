//! The service: one home for "unconfigured → configured". It holds the applied config and the
//! environment ([`Node`]) set up for it, persists a config it is given and applies it.
//!
//! Started without a config file, the service is unconfigured; exactly one config is accepted
//! afterwards ([`Service::configure`], the body of `POST /config`): validated, persisted
//! atomically (0600) at the `--config` path, then applied. A config file present at start is
//! applied as it is ([`Service::start`]). Applying means: resolve the stacks, register them
//! with the supervisor (stopped), start the node, which starts them once it owns the lease.
//!
//! Invariants:
//! - Applies are serialised by one lock, held from the first check to the published result:
//!   two configs at once cannot both win, and nothing is written unless the config is valid and
//!   the service unconfigured.
//! - Readers see nothing or a whole [`Applied`] (config, process names and node, published
//!   together on a watch channel), never a config without its node.
//! - The receiver of the supervisor's durable events goes to the first node, once.
//!
//! A configured service reloads its config ([`Service::reload`]: `PUT /config`, SIGHUP in
//! `serve`) under the same lock: the new config is validated like the first, the node applies
//! the difference (and writes the file, for `PUT /config`), and a new `Applied` with the same
//! node is published; watchers of [`Service::watch`] see each change.

mod error;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, watch};

use crate::config::{self, Config, ConfigError};
use crate::datadir::DataDir;
use crate::feed::{EventLog, EventLogError, Feed, FeedEvent, MemoryEventLog};
use crate::node::{Node, ReloadOptions, Reloaded};
use crate::supervisor::{SupervisorError, SupervisorHandle};

pub use error::ServiceError;

/// What [`Service::new`] needs.
pub struct ServiceOptions {
    /// state-manager's own directory (string stacks default to `<data_dir>/stacks`).
    pub data_dir: PathBuf,
    /// Where a config given at run time is persisted (`--config`).
    pub config_path: PathBuf,
    pub supervisor: SupervisorHandle,
    /// The event feed the supervisor publishes on (the node publishes its own events there).
    pub feed: Feed,
    /// The feed's durable end, for the state database.
    pub durable_events: mpsc::UnboundedReceiver<FeedEvent>,
    /// The binary to start the fence process from (see `lease::watchdog`), if any.
    pub fence_program: Option<PathBuf>,
}

/// The applied config and what was set up for it.
pub struct Applied {
    pub config: Arc<Config>,
    /// The names of its processes, in config order.
    pub processes: Vec<String>,
    /// The environment: storage, lease, checkpoints, and the stacks once it owns the lease.
    pub node: Arc<Node>,
}

/// The service's state. Cheap to clone; every clone is the same service.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    data_dir: PathBuf,
    config_path: PathBuf,
    fence_program: Option<PathBuf>,
    supervisor: SupervisorHandle,
    current: watch::Sender<Option<Arc<Applied>>>,
    /// Held while a config is checked, persisted and applied.
    apply: Mutex<Pending>,
    /// Event history while no state database is open here.
    memory: Arc<MemoryEventLog>,
    feed: Feed,
}

/// What only one apply can take.
struct Pending {
    events: Option<mpsc::UnboundedReceiver<FeedEvent>>,
}

impl Service {
    /// An unconfigured service. Its in-memory event history starts following the supervisor now.
    pub fn new(o: ServiceOptions) -> Service {
        Service {
            inner: Arc::new(Inner {
                memory: MemoryEventLog::spawn(o.feed.subscribe()),
                feed: o.feed,
                data_dir: o.data_dir,
                config_path: o.config_path,
                fence_program: o.fence_program,
                supervisor: o.supervisor,
                current: watch::channel(None).0,
                apply: Mutex::new(Pending {
                    events: Some(o.durable_events),
                }),
            }),
        }
    }

    /// The event feed: processes' and the node's events, live.
    pub fn feed(&self) -> &Feed {
        &self.inner.feed
    }

    /// Where a config given at run time is persisted.
    pub fn config_path(&self) -> &Path {
        &self.inner.config_path
    }

    /// What is applied, if anything yet.
    pub fn applied(&self) -> Option<Arc<Applied>> {
        self.inner.current.borrow().clone()
    }

    /// Every change of what is applied.
    pub fn watch(&self) -> watch::Receiver<Option<Arc<Applied>>> {
        self.inner.current.subscribe()
    }

    pub fn configured(&self) -> bool {
        self.inner.current.borrow().is_some()
    }

    pub fn config(&self) -> Option<Arc<Config>> {
        self.applied().map(|a| a.config.clone())
    }

    /// The environment, once the service is configured.
    pub fn node(&self) -> Option<Arc<Node>> {
        self.applied().map(|a| a.node.clone())
    }

    /// The environment, or [`ServiceError::NotConfigured`] for a request that needs one.
    pub fn environment(&self) -> Result<Arc<Node>, ServiceError> {
        self.node().ok_or(ServiceError::NotConfigured)
    }

    /// Apply the config read from the file at start (it is on disk already).
    pub async fn start(&self, config: Config) -> Result<Arc<Applied>, ServiceError> {
        let mut pending = self.inner.apply.lock().await;
        self.apply_locked(&mut pending, config).await
    }

    /// Configure an unconfigured service with `body`, a config as JSON text: validate it,
    /// persist it at [`Service::config_path`], apply it.
    pub async fn configure(&self, body: &[u8]) -> Result<Arc<Applied>, ServiceError> {
        let mut pending = self.inner.apply.lock().await;
        let path = &self.inner.config_path;
        if self.configured() {
            return Err(ServiceError::AlreadyConfigured { path: path.clone() });
        }
        if tokio::fs::try_exists(path).await.unwrap_or(false) {
            return Err(ServiceError::FileAppeared { path: path.clone() });
        }
        // Validation reads the user database (a process's `user` and `group`): off the runtime.
        let owned = body.to_vec();
        let config = tokio::task::spawn_blocking(move || parse(&owned))
            .await
            .map_err(|e| {
                let why = format!("validation did not finish: {e}");
                ServiceError::Invalid(vec![config::Problem::new("", why)])
            })??;
        persist(path.clone(), body.to_vec()).await?;
        let applied = self.apply_locked(&mut pending, config).await?;
        tracing::info!(config = %path.display(), processes = applied.processes.len(), "configured by POST /config");
        Ok(applied)
    }

    /// Reload the config: `body` is the new config as JSON text (`PUT /config`: written to
    /// [`Service::config_path`] once valid), or `None` to read the file there again (SIGHUP).
    /// Validated like [`Service::configure`] (every problem at once, nothing changed); the
    /// node works out and applies the difference ([`Node::reload`]).
    pub async fn reload(
        &self,
        body: Option<&[u8]>,
        mut opts: ReloadOptions,
    ) -> Result<Reloaded, ServiceError> {
        let _pending = self.inner.apply.lock().await;
        let Some(applied) = self.applied() else {
            return Err(ServiceError::NotConfigured);
        };
        let path = self.inner.config_path.clone();
        let owned = body.map(<[u8]>::to_vec);
        let read = path.clone();
        let (config, bytes) = tokio::task::spawn_blocking(move || match owned {
            Some(b) => parse(&b).map(|c| (c, Some(b))),
            None => config::parse_file(&read)
                .map(|c| (c, None))
                .map_err(|e| match e {
                    ConfigError::Invalid(problems) => ServiceError::Invalid(problems),
                    other => ServiceError::Unparsable(other),
                }),
        })
        .await
        .map_err(|e| {
            let why = format!("validation did not finish: {e}");
            ServiceError::Invalid(vec![config::Problem::new("", why)])
        })??;
        opts.write = bytes.map(|b| (path, b));
        let dry_run = opts.dry_run;
        let reloaded = applied.node.reload(config.clone(), opts).await?;
        if !dry_run {
            let next = Arc::new(Applied {
                config: Arc::new(config),
                processes: applied.node.process_names(),
                node: applied.node.clone(),
            });
            self.inner.current.send_replace(Some(next));
        }
        Ok(reloaded)
    }

    async fn apply_locked(
        &self,
        pending: &mut Pending,
        config: Config,
    ) -> Result<Arc<Applied>, ServiceError> {
        let inner = &self.inner;
        let specs = config::resolve(&config, &DataDir::new(&inner.data_dir).stacks_dir(&config));
        let processes = specs.iter().map(|s| s.name.clone()).collect();
        let Some(events) = pending.events.take() else {
            return Err(SupervisorError::AlreadyLoaded.into());
        };
        inner.supervisor.register(specs.clone()).await?;
        let node = Node::start(
            config.clone(),
            specs,
            &inner.data_dir,
            inner.supervisor.clone(),
            inner.feed.clone(),
            events,
            inner.fence_program.clone(),
        )
        .await?;
        let applied = Arc::new(Applied {
            config: Arc::new(config),
            processes,
            node,
        });
        inner.current.send_replace(Some(applied.clone()));
        Ok(applied)
    }
}

/// `GET /events` history: the state database while the node has it open, else memory.
#[async_trait::async_trait]
impl EventLog for Service {
    async fn recent(
        &self,
        limit: usize,
        process: Option<&glob::Pattern>,
    ) -> Result<Vec<FeedEvent>, EventLogError> {
        if let Some(node) = self.node()
            && let Some(events) = node.recent_events(limit, process).await
        {
            return events.map_err(|e| EventLogError::Unavailable(Box::new(e)));
        }
        self.inner.memory.recent(limit, process).await
    }
}

fn parse(body: &[u8]) -> Result<Config, ServiceError> {
    let text = std::str::from_utf8(body).map_err(ServiceError::NotText)?;
    config::parse(text).map_err(|e| match e {
        ConfigError::Invalid(problems) => ServiceError::Invalid(problems),
        other => ServiceError::Unparsable(other),
    })
}

async fn persist(path: PathBuf, bytes: Vec<u8>) -> Result<(), ServiceError> {
    let shown = path.clone();
    tokio::task::spawn_blocking(move || config::persist(&path, &bytes))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|cause| ServiceError::Persist { path: shown, cause })
}
