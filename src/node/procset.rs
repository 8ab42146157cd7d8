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

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{Node, NodeError};
use crate::config::{self, Config, ProcessSpec, StackEntry};
use crate::events::{Change, ChangeAction};
use crate::store::{Intent, Origin, SetChange, Store, StoreError, StoredStack};

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
    pub specs: Vec<ProcessSpec>,
}

/// The answer of a change of intent (start, stop, restart).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct IntentChange {
    pub processes: Vec<String>,
    /// The revision of the process set after the change.
    pub revision: u64,
}

/// The answer of `POST /processes`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Added {
    /// The stack's name.
    pub stack: String,
    /// The processes created (`web-1`, `web-2`, … with instances).
    pub created: Vec<String>,
    /// The processes asked to start (all of them unless `autostart: false`).
    pub started: Vec<String>,
    pub revision: u64,
}

/// What `POST /processes/{name}/scale` did.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Scaled {
    pub stack: String,
    pub instances: u32,
    /// The processes added and started.
    pub started: Vec<String>,
    /// The processes stopped and dropped (the highest numbered).
    pub stopped: Vec<String>,
    /// The revision after the change (unchanged when it already had that many).
    pub revision: u64,
}

/// What `PUT /processes/{name}` did.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Replaced {
    pub stack: String,
    /// The fields of the spec that changed (`command`, `env`, …); empty: nothing changed and
    /// nothing was touched.
    pub fields: Vec<String>,
    /// The instances restarted with the new spec, one at a time.
    pub restarted: Vec<String>,
    /// Instances added (more `instances`) and started unless `autostart: false`.
    pub added: Vec<String>,
    /// Instances stopped and dropped (fewer `instances`).
    pub removed: Vec<String>,
    pub revision: u64,
}

/// What `DELETE /processes/{name}` did.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Removed {
    pub stack: String,
    pub removed: Vec<String>,
    pub revision: u64,
}

impl Node {
    /// The revision of the process set, once this node has loaded it.
    pub fn revision(&self) -> Option<u64> {
        self.set_view().map(|v| v.revision)
    }

    pub(super) fn set_view(&self) -> Option<Arc<SetView>> {
        self.set.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The processes of the set (or of the config file before the set is loaded).
    pub(super) fn current_specs(&self) -> Vec<ProcessSpec> {
        self.set_view()
            .map_or_else(|| self.specs.clone(), |v| v.specs.clone())
    }

    fn publish(&self, view: SetView) {
        let revision = view.revision;
        *self.set.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(view));
        self.set_status(|s| s.revision = Some(revision));
    }

    fn view_of(
        &self,
        revision: u64,
        stacks: Vec<Stack>,
        intents: BTreeMap<String, Intent>,
    ) -> SetView {
        let mut config = (*self.config).clone();
        config.stacks = stacks.iter().map(|s| s.entry.clone()).collect();
        let specs = config::resolve(&config, &self.data_dir.stacks_dir(&config));
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
        let seed = self
            .config
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
        let stacks = merge(&self.config.stacks, &stored, &set.removed);
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

    /// Start, stop or restart the processes matching `pattern`, recording the operator's intent
    /// (stopped, or started) first.
    pub async fn change_intent(
        &self,
        op: Operate,
        pattern: &str,
        timeout: Option<Duration>,
        by: Option<String>,
    ) -> Result<IntentChange, NodeError> {
        self.require_owner()?;
        let _lock = self.set_lock.lock().await;
        let (store, view) = self.owned_set().await?;
        let names: Vec<String> = self
            .supervisor
            .list(Some(pattern))
            .await?
            .into_iter()
            .map(|p| p.name)
            .collect();
        if names.is_empty() {
            return Err(crate::supervisor::SupervisorError::NoMatch {
                pattern: pattern.into(),
            }
            .into());
        }
        let (intent, action) = match op {
            Operate::Stop => (Intent::Stopped, ChangeAction::Stop),
            Operate::Start | Operate::Restart => (Intent::Started, ChangeAction::Start),
        };
        let revision = store
            .change_process_set(
                SetChange::Intents {
                    processes: names.clone(),
                    intent,
                },
                None,
            )
            .await?;
        let mut intents = view.intents.clone();
        intents.extend(names.iter().map(|n| (n.clone(), intent)));
        self.publish(self.view_of(revision, view.stacks.clone(), intents));
        self.ship().await;
        for name in &names {
            let why = format!("{} by the operator", op.verb());
            let c = change(action, by.clone(), revision);
            self.supervisor.announce(name, c, why).await;
        }
        let processes = match op {
            Operate::Stop => self.supervisor.stop(pattern, timeout).await?,
            Operate::Start => self.supervisor.start(pattern).await?,
            Operate::Restart => self.supervisor.restart(pattern).await?,
        };
        Ok(IntentChange {
            processes,
            revision,
        })
    }

    /// Add a stack (`POST /processes`): validated with the whole set like a config file,
    /// committed, registered, then started unless `autostart: false`.
    pub async fn add_stack(
        &self,
        body: serde_json::Value,
        by: Option<String>,
    ) -> Result<Added, NodeError> {
        self.require_owner()?;
        let _lock = self.set_lock.lock().await;
        let (store, view) = self.owned_set().await?;
        if let Some(name) = body.get("name").and_then(|n| n.as_str())
            && view.stacks.iter().any(|s| s.entry.name() == name)
        {
            return Err(NodeError::Exists {
                name: name.to_string(),
            });
        }
        let (_, entry) =
            config::parse_stack_into(&view.config, body).map_err(NodeError::Invalid)?;
        let name = entry.name().to_string();
        let mut stacks = view.stacks.clone();
        stacks.push(Stack {
            origin: Origin::Api,
            entry: entry.clone(),
        });
        let next = self.view_of(view.revision, stacks, view.intents.clone());
        let created: Vec<ProcessSpec> = next
            .specs
            .iter()
            .filter(|s| s.stack == name)
            .cloned()
            .collect();
        check_probes(&created)?;
        let stored = StoredStack {
            name: name.clone(),
            origin: Origin::Api,
            spec: serde_json::to_string(&entry).unwrap_or_default(),
        };
        let revision = store
            .change_process_set(SetChange::Add(stored), None)
            .await?;
        let specs = next.specs.clone();
        self.publish(SetView { revision, ..next });
        self.ship().await;
        self.supervisor.sync(specs).await?;
        let names: Vec<String> = created.iter().map(|s| s.name.clone()).collect();
        for n in &names {
            let c = change(ChangeAction::Add, by.clone(), revision);
            self.supervisor
                .announce(n, c, "added by the operator".into())
                .await;
        }
        let mut started = Vec::new();
        for s in created.iter().filter(|s| s.autostart) {
            started.extend(self.supervisor.start(&s.name).await?);
        }
        Ok(Added {
            stack: name,
            created: names,
            started,
            revision,
        })
    }

    /// Remove a stack (`DELETE /processes/{name}`): refused while other stacks depend on it
    /// unless `force`; committed, then its processes are stopped and dropped.
    pub async fn remove_stack(
        &self,
        name: &str,
        force: bool,
        timeout: Option<Duration>,
        by: Option<String>,
    ) -> Result<Removed, NodeError> {
        self.require_owner()?;
        let _lock = self.set_lock.lock().await;
        let (store, view) = self.owned_set().await?;
        if !view.stacks.iter().any(|s| s.entry.name() == name) {
            return Err(NodeError::UnknownStack { name: name.into() });
        }
        let dependants: Vec<String> = view
            .config
            .stacks
            .iter()
            .filter_map(|e| match e {
                StackEntry::Inline(p) if p.depends_on.iter().any(|d| d == name) => {
                    Some(p.name.clone())
                }
                _ => None,
            })
            .collect();
        if !dependants.is_empty() && !force {
            return Err(NodeError::HasDependants {
                name: name.into(),
                dependants,
            });
        }
        let names: Vec<String> = view
            .specs
            .iter()
            .filter(|s| s.stack == name)
            .map(|s| s.name.clone())
            .collect();
        let revision = store
            .change_process_set(
                SetChange::Remove {
                    stack: name.into(),
                    processes: names.clone(),
                    tombstone: view
                        .stacks
                        .iter()
                        .any(|s| s.entry.name() == name && s.origin == Origin::File),
                },
                None,
            )
            .await?;
        let stacks: Vec<Stack> = view
            .stacks
            .iter()
            .filter(|s| s.entry.name() != name)
            .cloned()
            .collect();
        let mut intents = view.intents.clone();
        intents.retain(|k, _| !names.contains(k));
        let next = self.view_of(revision, stacks, intents);
        let specs = next.specs.clone();
        self.publish(next);
        self.ship().await;
        let stops = names.iter().map(|n| self.supervisor.stop(n, timeout));
        for r in futures::future::join_all(stops).await {
            r?;
        }
        for n in &names {
            let c = change(ChangeAction::Remove, by.clone(), revision);
            self.supervisor
                .announce(n, c, "removed by the operator".into())
                .await;
        }
        self.supervisor.sync(specs).await?;
        Ok(Removed {
            stack: name.into(),
            removed: names,
            revision,
        })
    }

    /// Scale a stack to `instances` (`POST /processes/{name}/scale`): adds `name-(k+1)…` and
    /// starts them, or stops and drops the highest numbered ones; the others are untouched. A
    /// stack without `instances` is one process named like the stack: scaling it replaces that
    /// process with `name-1…`.
    pub async fn scale_stack(
        &self,
        name: &str,
        instances: u32,
        by: Option<String>,
    ) -> Result<Scaled, NodeError> {
        self.require_owner()?;
        let _lock = self.set_lock.lock().await;
        let (store, view) = self.owned_set().await?;
        let Some(pos) = view.stacks.iter().position(|s| s.entry.name() == name) else {
            return Err(NodeError::UnknownStack { name: name.into() });
        };
        let StackEntry::Inline(pc) = &view.stacks[pos].entry else {
            return Err(NodeError::Invalid(vec![config::Problem::new(
                "instances",
                format!(
                    "{name:?} is a directory stack (one process); only a process defined inline can have instances"
                ),
            )]));
        };
        let mut pc = (**pc).clone();
        pc.instances = Some(instances);
        let body = serde_json::to_value(StackEntry::Inline(Box::new(pc))).unwrap_or_default();
        let mut others = view.config.clone();
        others.stacks.retain(|e| e.name() != name);
        let (_, entry) = config::parse_stack_into(&others, body).map_err(NodeError::Invalid)?;
        let mut stacks = view.stacks.clone();
        stacks[pos] = Stack {
            origin: Origin::Api,
            entry: entry.clone(),
        };
        let names_in = |v: &SetView| -> Vec<String> {
            v.specs
                .iter()
                .filter(|s| s.stack == name)
                .map(|s| s.name.clone())
                .collect()
        };
        let before = names_in(&view);
        let probe = self.view_of(view.revision, stacks.clone(), view.intents.clone());
        let after = names_in(&probe);
        let stopped: Vec<String> = before
            .iter()
            .filter(|n| !after.contains(n))
            .cloned()
            .collect();
        let added: Vec<String> = after
            .iter()
            .filter(|n| !before.contains(n))
            .cloned()
            .collect();
        if stopped.is_empty() && added.is_empty() {
            return Ok(Scaled {
                stack: name.into(),
                instances,
                started: Vec::new(),
                stopped: Vec::new(),
                revision: view.revision,
            });
        }
        let new_specs: Vec<ProcessSpec> = probe
            .specs
            .iter()
            .filter(|s| added.contains(&s.name))
            .cloned()
            .collect();
        check_probes(&new_specs)?;
        let stored = StoredStack {
            name: name.into(),
            origin: Origin::Api,
            spec: serde_json::to_string(&entry).unwrap_or_default(),
        };
        let revision = store
            .change_process_set(
                SetChange::Replace {
                    stack: stored,
                    dropped: stopped.clone(),
                },
                None,
            )
            .await?;
        let mut intents = view.intents.clone();
        intents.retain(|k, _| !stopped.contains(k));
        let next = self.view_of(revision, stacks, intents);
        let specs = next.specs.clone();
        self.publish(next);
        self.ship().await;
        let stops = stopped.iter().map(|n| self.supervisor.stop(n, None));
        for r in futures::future::join_all(stops).await {
            r?;
        }
        self.supervisor.sync(specs).await?;
        for n in stopped.iter().chain(&added) {
            let c = change(ChangeAction::Scale, by.clone(), revision);
            let why = format!("{name} scaled to {instances} by the operator");
            self.supervisor.announce(n, c, why).await;
        }
        let mut started = Vec::new();
        for n in &added {
            started.extend(self.supervisor.start(n).await?);
        }
        Ok(Scaled {
            stack: name.into(),
            instances,
            started,
            stopped,
            revision,
        })
    }

    /// Replace a stack's spec (`PUT /processes/{name}`): validated like a config file,
    /// committed, then instances no longer wanted are stopped and dropped, new ones started,
    /// and each changed one restarted with the new spec one at a time (rolling), each waiting
    /// for readiness before the next. A changed process keeps its intent: one stopped on
    /// purpose stays stopped with the new spec. Unchanged processes are untouched.
    pub async fn replace_stack(
        &self,
        name: &str,
        body: serde_json::Value,
        by: Option<String>,
    ) -> Result<Replaced, NodeError> {
        self.require_owner()?;
        let _lock = self.set_lock.lock().await;
        let (store, view) = self.owned_set().await?;
        let Some(pos) = view.stacks.iter().position(|s| s.entry.name() == name) else {
            return Err(NodeError::UnknownStack { name: name.into() });
        };
        if body.get("name").and_then(|n| n.as_str()) != Some(name) {
            return Err(NodeError::Invalid(vec![config::Problem::new(
                "name",
                format!(
                    "must be {name:?}, the stack this request replaces; to rename it, add the new one and remove this one"
                ),
            )]));
        }
        let old = serde_json::to_value(&view.stacks[pos].entry).unwrap_or_default();
        let mut others = view.config.clone();
        others.stacks.retain(|e| e.name() != name);
        let (_, entry) = config::parse_stack_into(&others, body).map_err(NodeError::Invalid)?;
        let fields = changed_fields(&old, &serde_json::to_value(&entry).unwrap_or_default());
        let mut stacks = view.stacks.clone();
        stacks[pos] = Stack {
            origin: Origin::Api,
            entry: entry.clone(),
        };
        let probe = self.view_of(view.revision, stacks.clone(), view.intents.clone());
        let of = |v: &SetView| -> Vec<ProcessSpec> {
            v.specs
                .iter()
                .filter(|s| s.stack == name)
                .cloned()
                .collect()
        };
        let (before, after) = (of(&view), of(&probe));
        let has = |list: &[ProcessSpec], n: &str| list.iter().any(|s| s.name == n);
        let removed: Vec<String> = before
            .iter()
            .filter(|s| !has(&after, &s.name))
            .map(|s| s.name.clone())
            .collect();
        let added: Vec<ProcessSpec> = after
            .iter()
            .filter(|s| !has(&before, &s.name))
            .cloned()
            .collect();
        let changed: Vec<String> = after
            .iter()
            .filter(|s| before.iter().any(|b| b.name == s.name && b != *s))
            .map(|s| s.name.clone())
            .collect();
        if fields.is_empty() {
            return Ok(Replaced {
                stack: name.into(),
                fields,
                restarted: Vec::new(),
                added: Vec::new(),
                removed: Vec::new(),
                revision: view.revision,
            });
        }
        check_probes(&after)?;
        let stored = StoredStack {
            name: name.into(),
            origin: Origin::Api,
            spec: serde_json::to_string(&entry).unwrap_or_default(),
        };
        let revision = store
            .change_process_set(
                SetChange::Replace {
                    stack: stored,
                    dropped: removed.clone(),
                },
                None,
            )
            .await?;
        let mut intents = view.intents.clone();
        intents.retain(|k, _| !removed.contains(k));
        let next = self.view_of(revision, stacks, intents);
        let final_specs = next.specs.clone();
        self.publish(next);
        self.ship().await;
        for n in removed
            .iter()
            .chain(&changed)
            .chain(added.iter().map(|s| &s.name))
        {
            let c = change(ChangeAction::Replace, by.clone(), revision);
            let why = format!("{name} replaced by the operator ({})", fields.join(", "));
            self.supervisor.announce(n, c, why).await;
        }
        let stops = removed.iter().map(|n| self.supervisor.stop(n, None));
        for r in futures::future::join_all(stops).await {
            r?;
        }
        // Rolling: the specs with the changed instances done so far on the new spec.
        let old_spec = |n: &str| before.iter().find(|s| s.name == n).cloned();
        let mut restarted = Vec::new();
        for (k, n) in changed.iter().enumerate() {
            let mixed: Vec<ProcessSpec> = final_specs
                .iter()
                .map(|s| match changed[k + 1..].contains(&s.name) {
                    true => old_spec(&s.name).unwrap_or_else(|| s.clone()),
                    false => s.clone(),
                })
                .collect();
            let was_up = !matches!(
                self.supervisor.get(n).await.map(|p| p.state),
                Ok(crate::events::StateName::Stopped
                    | crate::events::StateName::Exited
                    | crate::events::StateName::Fatal)
            );
            self.supervisor.stop(n, None).await?;
            self.supervisor.sync(mixed).await?;
            if was_up {
                self.supervisor.start(n).await?;
                self.supervisor.wait_up(vec![n.clone()]).await?;
                restarted.push(n.clone());
            }
        }
        self.supervisor.sync(final_specs).await?;
        for s in added.iter().filter(|s| s.autostart) {
            self.supervisor.start(&s.name).await?;
        }
        Ok(Replaced {
            stack: name.into(),
            fields,
            restarted,
            added: added.into_iter().map(|s| s.name).collect(),
            removed,
            revision,
        })
    }

    /// The open database and the loaded set, or why there are none.
    async fn owned_set(&self) -> Result<(Store, Arc<SetView>), NodeError> {
        let not_up = || NodeError::NotOwner {
            detail: "this node is still bringing the environment up; retry in a moment".into(),
        };
        let store = self.store().await.ok_or_else(not_up)?;
        let view = self.set_view().ok_or_else(not_up)?;
        Ok((store, view))
    }

    /// Ship what was just committed, waiting at most [`SHIP_WAIT`].
    async fn ship(&self) {
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
fn merge(file: &[StackEntry], stored: &[Stack], removed: &[String]) -> Vec<Stack> {
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

/// The top-level fields whose values differ between two stack specs (as JSON).
fn changed_fields(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (a, b) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

fn change(action: ChangeAction, by: Option<String>, revision: u64) -> Change {
    Change {
        action,
        by,
        revision,
    }
}

/// What an operator asks of running processes; each records an intent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operate {
    Start,
    Stop,
    Restart,
}

impl Operate {
    fn verb(self) -> &'static str {
        match self {
            Operate::Start => "started",
            Operate::Stop => "stopped",
            Operate::Restart => "restarted",
        }
    }
}

/// Probes that the config's rules accept but cannot be built (checked before anything is
/// committed).
fn check_probes(specs: &[ProcessSpec]) -> Result<(), NodeError> {
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
