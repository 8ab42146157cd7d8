//! Following the lease: bring the environment up when this node becomes the owner, down when it
//! stops being the owner.
//!
//! Bringing up, in order: decide whose state is newest (ours if we held the previous epoch, or
//! if storage holds nothing; else storage's) → open the state database (restored from
//! replication when storage's is newer) → reconcile the checkpoint catalog → restore the latest
//! checkpoint into env_dir (when storage's is newer) → record the epoch we own → load the
//! process set from the database (seeding it from the config file if it has none) → start what
//! the set and the operator's intents say should run. A failure is retried with backoff for as
//! long as the lease is ours. A restore a crash interrupted is settled by the checkpoint
//! engine's recovery first and, if it got past the swap, finished (its restore hooks) after the
//! set is loaded and before anything starts.
//!
//! Bringing down (the lease was lost or taken): stop the stacks within a short cap, so they are
//! down before the lease can pass on; then close the database (the fence already refuses
//! writes).
//!
//! An owner whose renewals keep failing brings the environment down by itself before its trust
//! ends ([`Timing::stop_before_trust_ends`](crate::lease::Timing)): the processes stop
//! gracefully and are down before the fence process would kill them. If a renewal then lands,
//! the environment comes up again under the same epoch, from its local state.

use std::sync::Arc;
use std::time::Duration;

use super::{Db, Node, NodeError};
use crate::lease::Role;
use crate::replication;
use crate::retry::Backoff;

/// First and longest wait between attempts to bring the environment up.
const RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));

pub(super) async fn follow(node: Arc<Node>) {
    let mut roles = node.lease.watch();
    let mut fence_reported = 0;
    loop {
        let role = roles.borrow_and_update().clone();
        match &role {
            Role::Owner { epoch, .. } => bring_up_retrying(&node, *epoch, &mut roles).await,
            other => {
                fence_reported = report_fenced(&node, fence_reported);
                bring_down(&node, &super::not_owner(node.node_id(), other)).await
            }
        }
        tokio::select! {
            changed = roles.changed() => if changed.is_err() { break },
            _ = trust_running_out(&node, &role) => {
                let why = "its lease could not be renewed and trust runs out soon";
                bring_down(&node, why).await;
                if roles.changed().await.is_err() {
                    break;
                }
            }
        }
    }
}

/// Say so when the fence process fired since `reported` (its count of firings last said):
/// this server did not run in time to stop its processes itself. The log says it, and so does
/// an event of [`super::ENVIRONMENT`] (kept until this node opens a database again, and shown
/// in `GET /events` meanwhile). Returns the count now.
fn report_fenced(node: &Node, reported: u64) -> u64 {
    let Some(status) = node.lease.fence().watchdog().map(|w| w.status()) else {
        return reported;
    };
    if let Some(f) = status.last_fired.filter(|_| status.fired > reported) {
        let reason = format!(
            "the fence process killed {} process group(s) of lease epoch {}: the lease was not renewed in time and this server did not run to stop them",
            f.processes, f.epoch
        );
        tracing::error!(epoch = f.epoch, processes = f.processes, at = %crate::lease::rfc3339(f.at), "{reason}");
        node.feed.publish(super::environment_event(f.at, reason));
    }
    status.fired
}

/// Resolves when an owner must start stopping its processes so that they are down before its
/// trust ends (never for another role).
async fn trust_running_out(node: &Node, role: &Role) {
    let Role::Owner { .. } = role else {
        return std::future::pending().await;
    };
    let Some(left) = node.lease.fence().remaining() else {
        return;
    };
    let lead = node.lease.timing().stop_before_trust_ends();
    tokio::time::sleep(left.saturating_sub(lead)).await;
}

async fn bring_up_retrying(
    node: &Arc<Node>,
    epoch: u64,
    roles: &mut tokio::sync::watch::Receiver<Role>,
) {
    let mut waits = RETRY.delays();
    loop {
        if node.lease.role().owned_epoch() != Some(epoch) {
            return;
        }
        let Err(e) = bring_up(node, epoch).await else {
            return;
        };
        let wait = waits.next_delay();
        tracing::error!(
            epoch,
            "cannot bring the environment up (retrying in {wait:?}): {e}"
        );
        node.set_status(|s| s.last_error = Some(format!("bringing the environment up: {e}")));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            r = roles.changed() => if r.is_err() { return },
        }
    }
}

async fn bring_up(node: &Arc<Node>, epoch: u64) -> Result<(), NodeError> {
    if node.is_up() {
        return Ok(());
    }
    let _lock = node.ops.lock().await;
    node.set_status(|s| {
        s.operation = Some(super::Operation {
            kind: super::OperationKind::Takeover,
            since: time::OffsetDateTime::now_utc(),
        })
    });
    let result = bring_up_locked(node, epoch).await;
    node.set_status(|s| s.operation = None);
    result
}

async fn bring_up_locked(node: &Arc<Node>, epoch: u64) -> Result<(), NodeError> {
    let mut timings = super::Timings::start();
    let db_path = node.data_dir.db();
    // Our own record of this epoch or the one before: nobody else has written since.
    let ours = previous_epoch(node).is_some_and(|p| p == epoch || p + 1 == epoch);
    let keep_local = ours || storage_is_empty(node).await?;
    if !keep_local && db_path.exists() {
        let tag = format!("before-epoch-{epoch}");
        let aside = replication::set_aside(&db_path, &tag).map_err(|source| NodeError::Io {
            path: db_path.clone(),
            source,
        })?;
        tracing::info!(moved_to = %aside.display(), "another node owned the environment since: restoring its state database");
    }
    let recovery = node.engine.recover().await?;
    let (store, replicator) = replication::open(
        &db_path,
        node.objects.clone(),
        &node.config().replication,
        Some(node.lease.fence()),
    )
    .await?;
    let last = super::catalog::reconcile(node, &store).await?;
    timings.lap("database");
    if !keep_local && let Some(latest) = &last {
        let manifest = node.engine.load_manifest(latest.id.as_str()).await?;
        let restored = node.engine.restore(&manifest).await?;
        tracing::info!(checkpoint = %restored.restored, files = restored.files, "restored the latest checkpoint into env_dir");
    }
    timings.lap("env_dir");
    write_owner_record(node, epoch)?;
    give_epoch_to_processes(node, epoch)?;
    if let Some(r) = &replicator {
        forward_status(node, r.status());
    }
    node.persist.set_store(Some(store.clone()));
    *node.db.write().await = Some(Db {
        store: store.clone(),
        replicator,
    });
    node.load_set(&store).await?;
    if let Some(interrupted) = recovery.restore {
        node.settle_interrupted_restore(interrupted, &store).await;
    }
    node.start_stacks().await?;
    timings.lap("start");
    let takeover = super::Takeover {
        epoch,
        at: time::OffsetDateTime::now_utc(),
        kept_local_state: keep_local,
        timings,
    };
    node.set_status(|s| {
        s.up = true;
        s.last_error = None;
        s.last_checkpoint = last;
        s.last_takeover = Some(takeover);
    });
    tracing::info!(
        epoch,
        keep_local,
        "this node owns the environment; stacks started"
    );
    crate::memory::release_startup_memory();
    Ok(())
}

async fn bring_down(node: &Arc<Node>, why: &str) {
    if !node.is_up() {
        return;
    }
    let _lock = node.ops.lock().await;
    if !node.is_up() {
        return;
    }
    let cap = node.lease.timing().stop_within;
    tracing::warn!(?cap, "stopping the stacks: {why}");
    if let Err(e) = node.supervisor.stop_all_within(cap).await {
        tracing::error!("stopping the stacks after losing the lease: {e}");
    }
    close_db(node).await;
    node.set_status(|s| s.up = false);
}

/// Flush persisted events, stop replication (a final sync, refused by the fence if the lease is
/// gone) and close the state database.
pub(super) async fn close_db(node: &Node) {
    node.persist.flush().await;
    node.persist.set_store(None);
    if let Some(db) = node.db.write().await.take() {
        if let Some(r) = &db.replicator
            && let Err(e) = r.shutdown().await
        {
            tracing::warn!("final replication sync: {e}");
        }
        if let Err(e) = db.store.close().await {
            tracing::warn!("closing the state database: {e}");
        }
    }
    node.replication.send_replace(None);
}

fn forward_status(
    node: &Arc<Node>,
    mut rx: tokio::sync::watch::Receiver<replication::ReplicationStatus>,
) {
    let weak = Arc::downgrade(node);
    tokio::spawn(async move {
        loop {
            let Some(node) = weak.upgrade() else { break };
            node.replication
                .send_replace(Some(rx.borrow_and_update().clone()));
            drop(node);
            if rx.changed().await.is_err() {
                break;
            }
        }
    });
}

/// Storage holds no state of this environment yet: nothing to restore.
async fn storage_is_empty(node: &Node) -> Result<bool, NodeError> {
    let db = node.objects.list(replication::layout::ROOT).await?;
    Ok(db.is_empty() && node.engine.latest().await?.is_none())
}

#[derive(serde::Serialize, serde::Deserialize)]
struct OwnerRecord {
    epoch: u64,
}

/// The last epoch this data directory owned the environment under, if it ever did.
fn previous_epoch(node: &Node) -> Option<u64> {
    let text = std::fs::read_to_string(node.data_dir.owner_record()).ok()?;
    serde_json::from_str::<OwnerRecord>(&text)
        .ok()
        .map(|r| r.epoch)
}

/// `STATE_MANAGER_LEASE_EPOCH` for every process started from now on, and the same in the
/// file `STATE_MANAGER_LEASE_EPOCH_FILE` names (replaced atomically), for those running.
fn give_epoch_to_processes(node: &Node, epoch: u64) -> Result<(), NodeError> {
    let path = node.data_dir.lease_epoch_file();
    crate::durable::write_file(&path, format!("{epoch}\n").as_bytes()).map_err(|source| {
        NodeError::Io {
            path: path.clone(),
            source,
        }
    })?;
    node.supervisor.ambient().set(vec![
        ("STATE_MANAGER_LEASE_EPOCH".into(), epoch.to_string()),
        (
            "STATE_MANAGER_LEASE_EPOCH_FILE".into(),
            path.display().to_string(),
        ),
    ]);
    Ok(())
}

fn write_owner_record(node: &Node, epoch: u64) -> Result<(), NodeError> {
    let path = node.data_dir.owner_record();
    let body = serde_json::to_vec(&OwnerRecord { epoch }).unwrap_or_default();
    crate::config::persist(&path, &body).map_err(|source| NodeError::Io { path, source })
}
