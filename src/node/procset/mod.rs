//! The environment's process set and the operator's intent, kept in the state database: loaded
//! (or seeded from the config file) when this node brings the environment up, changed by the
//! API, and handed to the supervisor.
//!
//! Invariants:
//! - What runs is, at every bring-up: the stacks of this node's config file (each in the form
//!   an API change stored, if one did; one removed through the API left out), then the stacks
//!   added through the API; with the operator's intents. The database seeds and records, the
//!   file declares: node-specific paths in a file stack stay each node's own, and an edited
//!   file applies at the next start. The supervisor is made to match the set at every bring-up
//!   and after every change.
//! - Changes are serialised by one lock held from validation to the supervisor's answer, and
//!   each is committed (incrementing the revision) before it is acted on or answered; a change
//!   the database refuses changes nothing.
//! - After a commit, replication is asked to ship it at once (bounded wait), so a kill -9 right
//!   after the answer loses it only if storage is unreachable.
//! - A standby refuses every change (409 naming the owner).
//!
//! Here: the loaded set and bring-up. The changes: `intent.rs` (start, stop, restart),
//! `stacks.rs` (add, remove, scale), `replace.rs` (a new spec, rolling), `reload.rs` (a new
//! config file); `answers.rs` what each answers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::{Node, NodeError};
use crate::config::{self, Config, ProcessSpec, StackEntry};
use crate::events::{Change, ChangeAction};
use crate::store::{Intent, Origin, SetChange, Store, StoreError, StoredStack};

mod answers;
mod intent;
mod reload;
mod replace;
mod stacks;

pub use answers::{Added, IntentChange, Reloaded, Removed, Replaced, Scaled};
pub use intent::Operate;
pub use reload::ReloadOptions;
pub use stacks::RemoveOptions;

/// Longest a change waits for replication to ship it before answering anyway.
const SHIP_WAIT: Duration = Duration::from_secs(5);

/// One stack of the set.
#[derive(Clone, Debug)]
pub(super) struct Stack {
    pub origin: Origin,
    pub entry: StackEntry,
}

/// The set as loaded, with the config it makes and its processes.
#[derive(Debug)]
pub(super) struct SetView {
    pub revision: u64,
    pub stacks: Vec<Stack>,
    pub intents: BTreeMap<String, Intent>,
    pub config: Config,
    pub specs: Vec<Arc<ProcessSpec>>,
}

impl Node {
    /// The revision of the process set, once this node has loaded it.
    pub fn revision(&self) -> Option<u64> {
        self.set_view().map(|v| v.revision)
    }

    pub(super) fn set_view(&self) -> Option<Arc<SetView>> {
        self.set.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Fill in each process's `origin` and the operator's `intent` from the loaded set (left
    /// `null` before it is loaded), for `GET /processes`.
    pub fn annotate(&self, list: &mut [crate::supervisor::ProcessInfo]) {
        let Some(view) = self.set_view() else { return };
        for p in list {
            p.origin = view
                .stacks
                .iter()
                .find(|s| s.entry.name() == p.stack)
                .map(|s| s.origin);
            p.intent = view.intents.get(&p.name).copied();
        }
    }

    /// The names of the processes of the set (or of the config file before it is loaded).
    pub fn process_names(&self) -> Vec<String> {
        self.current_specs()
            .iter()
            .map(|s| s.name.clone())
            .collect()
    }

    /// The processes of the set (or of the config file before the set is loaded).
    pub(super) fn current_specs(&self) -> Vec<Arc<ProcessSpec>> {
        self.set_view()
            .map_or_else(|| self.specs.clone(), |v| v.specs.clone())
    }

    pub(super) fn publish(&self, view: SetView) {
        let revision = view.revision;
        *self.set.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(view));
        self.set_status(|s| s.revision = Some(revision));
    }

    /// Commit a stack replaced by the API (`stacks` holds it as `entry`, origin `api`) with
    /// the instances in `dropped` gone and their intents with them; publish the new view and
    /// wake replication. Returns the new revision and the specs of the whole set.
    pub(super) async fn commit_replaced(
        &self,
        store: &Store,
        view: &SetView,
        entry: &StackEntry,
        stacks: Vec<Stack>,
        dropped: &[String],
    ) -> Result<(u64, Vec<Arc<ProcessSpec>>), NodeError> {
        let stored = StoredStack {
            name: entry.name().into(),
            origin: Origin::Api,
            spec: serde_json::to_string(entry).unwrap_or_default(),
        };
        let revision = store
            .change_process_set(
                SetChange::Replace {
                    stack: stored,
                    dropped: dropped.to_vec(),
                },
                None,
            )
            .await?;
        let mut intents = view.intents.clone();
        intents.retain(|k, _| !dropped.contains(k));
        let next = self.view_of(revision, stacks, intents);
        let specs = next.specs.clone();
        self.publish(next);
        self.ship().await;
        Ok((revision, specs))
    }

    pub(super) fn view_of(
        &self,
        revision: u64,
        stacks: Vec<Stack>,
        intents: BTreeMap<String, Intent>,
    ) -> SetView {
        self.view_with(&self.config(), revision, stacks, intents)
    }

    /// The view of `stacks` under the global settings of `file` (a config file).
    pub(super) fn view_with(
        &self,
        file: &Config,
        revision: u64,
        stacks: Vec<Stack>,
        intents: BTreeMap<String, Intent>,
    ) -> SetView {
        let mut config = file.clone();
        config.stacks = stacks.iter().map(|s| s.entry.clone()).collect();
        let mut specs = config::resolve(&config, &self.data_dir.stacks_dir(&config));
        // A process whose definition did not change keeps the copy the supervisor holds.
        config::share(&mut specs, &self.current_specs());
        // A dependency removed with `force=true` is no longer waited for (the specs keep the
        // name, which nothing matches); validation of later changes ignores it.
        let names: Vec<String> = stacks.iter().map(|s| s.entry.name().to_string()).collect();
        for e in &mut config.stacks {
            if let StackEntry::Inline(p) = e {
                p.depends_on.retain(|d| names.contains(d));
            }
        }
        SetView {
            revision,
            stacks,
            intents,
            config,
            specs,
        }
    }

    /// At bring-up, with the database open: load the set (seeding it from the config file if
    /// the database never had one) and make the supervisor's processes match it. All of them
    /// are down at this point.
    pub(super) async fn load_set(&self, store: &Store) -> Result<(), NodeError> {
        let _lock = self.set_lock.lock().await;
        let file = self.config();
        let seed = file
            .stacks
            .iter()
            .map(|e| StoredStack {
                name: e.name().to_string(),
                origin: Origin::File,
                spec: serde_json::to_string(e).unwrap_or_default(),
            })
            .collect();
        let (set, seeded) = match store.process_set().await? {
            Some(set) => (set, false),
            None => store.seed_process_set(seed).await?,
        };
        let mut stored = Vec::new();
        for s in &set.stacks {
            let entry: StackEntry =
                serde_json::from_str(&s.spec).map_err(|e| StoreError::Corrupt {
                    column: "stacks.spec",
                    value: format!("{}: {e}", s.name),
                })?;
            stored.push(Stack {
                origin: s.origin,
                entry,
            });
        }
        let stacks = merge(&file.stacks, &stored, &set.removed);
        let view = self.view_of(set.revision, stacks, set.intents);
        let problems = config::validate(&view.config);
        if !problems.is_empty() {
            return Err(NodeError::Invalid(problems));
        }
        self.supervisor.sync(view.specs.clone()).await?;
        let names: Vec<String> = view.specs.iter().map(|s| s.name.clone()).collect();
        let revision = view.revision;
        self.publish(view);
        let from_api = self.set_view().map_or(0, |v| {
            v.stacks.iter().filter(|s| s.origin == Origin::Api).count()
        });
        tracing::info!(
            revision,
            seeded,
            processes = names.len(),
            stacks_added_by_api = from_api,
            "loaded the process set"
        );
        Ok(())
    }

    /// Start the processes of the set that should run: `autostart`, unless the operator's
    /// intent says otherwise.
    pub(super) async fn start_stacks(&self) -> Result<(), NodeError> {
        let overrides: HashMap<String, bool> = self
            .set_view()
            .map(|v| {
                v.intents
                    .iter()
                    .map(|(k, i)| (k.clone(), *i == Intent::Started))
                    .collect()
            })
            .unwrap_or_default();
        Ok(self.supervisor.start_all_with(overrides).await?)
    }

    /// The open database and the loaded set, or why there are none.
    pub(super) async fn owned_set(&self) -> Result<(Store, Arc<SetView>), NodeError> {
        let not_up = || NodeError::NotOwner {
            detail: "this node is still bringing the environment up; retry in a moment".into(),
        };
        let store = self.store().await.ok_or_else(not_up)?;
        let view = self.set_view().ok_or_else(not_up)?;
        Ok((store, view))
    }

    /// Ship what was just committed, waiting at most [`SHIP_WAIT`].
    pub(super) async fn ship(&self) {
        let db = self.db.read().await;
        let Some(r) = db.as_ref().and_then(|d| d.replicator.as_ref()) else {
            return;
        };
        match tokio::time::timeout(SHIP_WAIT, r.sync_now()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!("the change is committed here but not yet in storage: {e}")
            }
            Err(_) => tracing::warn!(
                "the change is committed here; storage did not take it within {SHIP_WAIT:?}, replication keeps trying"
            ),
        }
    }
}

/// The set an owner runs: the stacks of its own config file in the file's order (a stack
/// replaced or scaled through the API in its stored form instead, one removed through the API
/// left out), then the stacks added through the API.
pub(super) fn merge(file: &[StackEntry], stored: &[Stack], removed: &[String]) -> Vec<Stack> {
    let api = |name: &str| {
        stored
            .iter()
            .find(|s| s.origin == Origin::Api && s.entry.name() == name)
    };
    let mut out: Vec<Stack> = file
        .iter()
        .filter(|e| !removed.iter().any(|r| r == e.name()))
        .map(|e| {
            api(e.name()).cloned().unwrap_or_else(|| Stack {
                origin: Origin::File,
                entry: e.clone(),
            })
        })
        .collect();
    out.extend(
        stored
            .iter()
            .filter(|s| s.origin == Origin::Api && !file.iter().any(|e| e.name() == s.entry.name()))
            .cloned(),
    );
    out
}

/// Refuse a change made `If-Match` a revision the set is no longer at.
pub(super) fn check_revision(view: &SetView, expected: Option<u64>) -> Result<(), NodeError> {
    match expected {
        Some(expected) if expected != view.revision => Err(NodeError::Stale {
            expected,
            found: view.revision,
        }),
        _ => Ok(()),
    }
}

pub(super) fn change(action: ChangeAction, by: Option<String>, revision: u64) -> Change {
    Change {
        action,
        by,
        revision,
    }
}

/// Probes that the config's rules accept but cannot be built (checked before anything is
/// committed).
pub(super) fn check_probes(specs: &[Arc<ProcessSpec>]) -> Result<(), NodeError> {
    let mut problems = Vec::new();
    for s in specs {
        for (what, p) in [("readiness", &s.readiness), ("liveness", &s.liveness)] {
            if let Some(p) = p
                && let Err(e) = crate::probes::ProbeSpec::new(p, s)
            {
                problems.push(config::Problem::new(what, e.to_string()));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(NodeError::Invalid(problems))
    }
}
