//! Adding, removing and scaling stacks at runtime. Each is validated with the whole set like a
//! config file (nothing committed on a problem), committed (incrementing the revision), then
//! acted on; processes the change does not name are never touched (same pids).

use std::sync::Arc;
use std::time::Duration;

use super::super::{Node, NodeError};
use super::{Added, Removed, Scaled, SetView, Stack, change, check_probes, check_revision};
use crate::config::{self, ProcessSpec, StackEntry};
use crate::events::ChangeAction;
use crate::store::{Origin, SetChange, StoredStack};

/// How `DELETE /processes/{name}` removes a stack.
#[derive(Clone, Debug, Default)]
pub struct RemoveOptions {
    /// Remove it although other stacks depend on it.
    pub force: bool,
    /// Each process's stop timeout instead of its own.
    pub timeout: Option<Duration>,
    /// The revision the set must be at (`If-Match`).
    pub expected: Option<u64>,
}

impl Node {
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
        let created: Vec<Arc<ProcessSpec>> = next
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
    /// unless `force`, or when the set moved from `expected`; committed, then its processes
    /// are stopped and dropped.
    pub async fn remove_stack(
        &self,
        name: &str,
        opts: RemoveOptions,
        by: Option<String>,
    ) -> Result<Removed, NodeError> {
        let RemoveOptions {
            force,
            timeout,
            expected,
        } = opts;
        self.require_owner()?;
        let _lock = self.set_lock.lock().await;
        let (store, view) = self.owned_set().await?;
        check_revision(&view, expected)?;
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
        let new_specs: Vec<Arc<ProcessSpec>> = probe
            .specs
            .iter()
            .filter(|s| added.contains(&s.name))
            .cloned()
            .collect();
        check_probes(&new_specs)?;
        let (revision, specs) = self
            .commit_replaced(&store, &view, &entry, stacks, &stopped)
            .await?;
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
}
