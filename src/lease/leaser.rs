//! The lease's background task and the handle the rest of the node holds.
//!
//! The task owns the [`Lease`] operations and is the only thing that changes this node's
//! [`Role`]. As owner it renews every `ttl / 3` (retrying every `ttl / 15` after a failure) and
//! publishes [`Role::Lost`] the moment its trust runs out, before the record expires; as
//! standby it looks at the lease every jittered poll interval (or when the lease it saw frees)
//! and, when acquiring on its own is allowed, takes it.
//!
//! Acquiring on its own: at start-up the node always tries once. After that a standby keeps
//! trying only with `lease.auto_acquire` (default true). After [`LeaseHandle::release`] the node
//! waits for [`LeaseHandle::acquire`] either way, so that a released environment does not bounce
//! back. After a loss it follows `auto_acquire` again.
//!
//! Shutdown: [`LeaseHandle::stop`] with `release` gives the lease up; without it (or when every
//! handle is dropped) the task stops renewing and the lease frees at its expiry, as after a
//! crash.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::role::Counters;
use super::timing::Claim;
use super::{
    DynClock, Fence, Held, Lease, LeaseError, LeaseEvent, LeaseStats, Role, SystemClock, Timing,
};
use crate::config::LeaseConfig;
use crate::objstore::DynStore;

/// A tenure this node holds, as returned by [`LeaseHandle::acquire`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Tenure {
    pub epoch: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub acquired_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The record this acquisition replaced (`None`: it created the lease object, or the
    /// tenure was already held).
    pub previous: Option<super::LeaseView>,
}

/// What [`LeaseHandle::release`] gave up.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReleaseOutcome {
    pub released_epoch: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub released_at: OffsetDateTime,
}

/// Builds and starts the lease task.
pub struct Leaser {
    store: DynStore,
    node: String,
    config: LeaseConfig,
    clock: DynClock,
    events: broadcast::Sender<LeaseEvent>,
    watchdog: Option<Arc<super::Watchdog>>,
    instance: Option<String>,
}

impl Leaser {
    /// A leaser for node `node_id` on `store` (see [`super::node_id`]), using the system clock.
    pub fn new(store: DynStore, node_id: String, config: &LeaseConfig) -> Leaser {
        Leaser {
            store,
            node: node_id,
            config: config.clone(),
            clock: Arc::new(SystemClock),
            events: broadcast::channel(1024).0,
            watchdog: None,
            instance: None,
        }
    }

    /// Name this data directory's instance id ([`super::instance_id`]) in the lease, so that
    /// a restart on the same directory reclaims its own lease at once.
    pub fn with_instance(mut self, instance: Option<String>) -> Leaser {
        self.instance = instance;
        self
    }

    /// Hold the processes to the lease's trust through the fence process's page: armed on
    /// every grant of the fence, disarmed when it closes ([`super::watchdog`]).
    pub fn with_watchdog(mut self, watchdog: Option<Arc<super::Watchdog>>) -> Leaser {
        self.watchdog = watchdog;
        self
    }

    /// Use another clock. The task sleeps on the tokio runtime's clock, so the clock must advance
    /// with it: [`SystemClock`] in real time, [`super::RuntimeClock`] under a paused test clock.
    pub fn with_clock(mut self, clock: DynClock) -> Leaser {
        self.clock = clock;
        self
    }

    /// Receive tenure events from the very first one (subscribe before [`Leaser::spawn`]).
    pub fn subscribe(&self) -> broadcast::Receiver<LeaseEvent> {
        self.events.subscribe()
    }

    /// Start the task on the current tokio runtime. Fails on settings that would be unsafe.
    pub fn spawn(self) -> Result<LeaseHandle, LeaseError> {
        let timing = Timing::new(&self.config)?;
        if !crate::config::is_name(&self.node) {
            return Err(LeaseError::InvalidNodeId { id: self.node });
        }
        let (cmd_tx, cmds) = mpsc::channel(16);
        let (role_tx, role) = watch::channel(Role::Starting);
        let fence = Fence::new(Arc::clone(&self.clock)).with_watchdog(self.watchdog);
        let counters = Arc::new(Counters::default());
        let task = Task {
            lease: Lease::new(self.store, self.node.clone(), self.clock, timing)
                .with_instance(self.instance),
            auto: self.config.auto_acquire,
            desire: Desire::Auto,
            held: None,
            next_renew: Duration::ZERO,
            last_error: None,
            lost_epoch: None,
            seen: None,
            fence: fence.clone(),
            role: role_tx,
            events: self.events.clone(),
            counters: Arc::clone(&counters),
            cmds,
        };
        tokio::spawn(task.run());
        Ok(LeaseHandle {
            node: self.node,
            timing,
            role,
            fence,
            events: self.events,
            counters,
            cmds: cmd_tx,
        })
    }
}

/// The node's cheap handle on its lease: role, fence, events, counters, and the explicit
/// acquire / release / stop. Clones share the one task.
#[derive(Clone, Debug)]
pub struct LeaseHandle {
    node: String,
    timing: Timing,
    role: watch::Receiver<Role>,
    fence: Fence,
    events: broadcast::Sender<LeaseEvent>,
    counters: Arc<Counters>,
    cmds: mpsc::Sender<Command>,
}

impl LeaseHandle {
    pub fn node_id(&self) -> &str {
        &self.node
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// Follow role changes (the latest value only; see [`LeaseHandle::subscribe`] for every
    /// tenure start and end).
    pub fn watch(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// The fence every storage writer of this node checks.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LeaseEvent> {
        self.events.subscribe()
    }

    pub fn stats(&self) -> LeaseStats {
        self.counters.snapshot()
    }

    /// Take the lease now if it is free (absent, released, expired); the current tenure if
    /// this node already owns it; [`LeaseError::Held`] naming the holder otherwise.
    pub async fn acquire(&self) -> Result<Tenure, LeaseError> {
        self.ask(Command::Acquire).await?
    }

    /// Stop trusting the lease (the fence closes first) and mark it released so that another
    /// node can take it at once. [`LeaseError::NotHeld`] if this node is not the owner. If the
    /// release cannot be written the error says why; the node has given the lease up either
    /// way and it frees at its expiry.
    pub async fn release(&self) -> Result<ReleaseOutcome, LeaseError> {
        self.ask(Command::Release).await?
    }

    /// End the task, releasing the lease first if `release` and owned. Without release an
    /// owned lease frees at its expiry.
    pub async fn stop(&self, release: bool) -> Result<Option<ReleaseOutcome>, LeaseError> {
        self.ask(|reply| Command::Stop { release, reply }).await?
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, LeaseError> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(make(tx))
            .await
            .map_err(|_| LeaseError::Stopped)?;
        rx.await.map_err(|_| LeaseError::Stopped)
    }
}

type Reply<T> = oneshot::Sender<Result<T, LeaseError>>;

#[derive(Debug)]
enum Command {
    Acquire(Reply<Tenure>),
    Release(Reply<ReleaseOutcome>),
    Stop {
        release: bool,
        reply: Reply<Option<ReleaseOutcome>>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Desire {
    /// Take the lease whenever it is free.
    Auto,
    /// Only on an explicit acquire.
    Manual,
}

enum Flow {
    Continue,
    Stop,
}

struct Task {
    lease: Lease,
    auto: bool,
    desire: Desire,
    held: Option<Held>,
    /// Monotonic instant of the next renewal attempt.
    next_renew: Duration,
    last_error: Option<String>,
    /// The epoch this node lost in this process (its record, if still there, is dead).
    lost_epoch: Option<u64>,
    /// What the last look found, to wake when the lease frees.
    seen: Option<Claim>,
    fence: Fence,
    role: watch::Sender<Role>,
    events: broadcast::Sender<LeaseEvent>,
    counters: Arc<Counters>,
    cmds: mpsc::Receiver<Command>,
}

mod task;
