//! Replacing a stack's spec (`PUT /processes/{name}`): the changed instances restart with the
//! new spec one at a time, each ready before the next (rolling), so a stack of n ready
//! instances never has fewer than n - 1 ready; a process stopped on purpose stays stopped.

use std::sync::Arc;

use super::super::{Node, NodeError};
use super::{Replaced, SetView, Stack, change, check_probes, check_revision};
use crate::config::{self, ProcessSpec};
use crate::events::ChangeAction;
use crate::store::Origin;

impl Node {
    /// Replace a stack's spec (`PUT /processes/{name}`): validated like a config file,
    /// committed, then instances no longer wanted are stopped and dropped, new ones started,
    /// and each changed one restarted with the new spec one at a time (rolling), each waiting
    /// for readiness before the next. A changed process keeps its intent: one stopped on
    /// purpose stays stopped with the new spec. Unchanged processes are untouched. With
    /// `expected` (`If-Match`), refused unless the set is at that revision.
    pub async fn replace_stack(
        &self,
        name: &str,
        body: serde_json::Value,
        expected: Option<u64>,
        by: Option<String>,
    ) -> Result<Replaced, NodeError> {
        self.require_owner()?;
        let _lock = self.set_lock.lock().await;
        let (store, view) = self.owned_set().await?;
        check_revision(&view, expected)?;
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
        let fields =
            config::changed_fields(&old, &serde_json::to_value(&entry).unwrap_or_default());
        let mut stacks = view.stacks.clone();
        stacks[pos] = Stack {
            origin: Origin::Api,
            entry: entry.clone(),
        };
        let probe = self.view_of(view.revision, stacks.clone(), view.intents.clone());
        let of = |v: &SetView| -> Vec<Arc<ProcessSpec>> {
            v.specs
                .iter()
                .filter(|s| s.stack == name)
                .cloned()
                .collect()
        };
        let (before, after) = (of(&view), of(&probe));
        let has = |list: &[Arc<ProcessSpec>], n: &str| list.iter().any(|s| s.name == n);
        let removed: Vec<String> = before
            .iter()
            .filter(|s| !has(&after, &s.name))
            .map(|s| s.name.clone())
            .collect();
        let added: Vec<Arc<ProcessSpec>> = after
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
        let (revision, final_specs) = self
            .commit_replaced(&store, &view, &entry, stacks, &removed)
            .await?;
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
        let restarted = self.roll(&before, &final_specs, &changed, false).await?;
        self.supervisor.sync(final_specs).await?;
        for s in added.iter().filter(|s| s.autostart) {
            self.supervisor.start(&s.name).await?;
        }
        Ok(Replaced {
            stack: name.into(),
            fields,
            restarted,
            added: added.iter().map(|s| s.name.clone()).collect(),
            removed,
            revision,
        })
    }
}

impl Node {
    /// Restart the `changed` processes one at a time on their specs of `final_specs`, each
    /// waiting for readiness before the next (rolling); `before` holds their old specs. A
    /// process that was down stays down and takes the new spec at its next start. With
    /// `defer`, other processes whose spec differs keep running on the old one until their
    /// next start (a reload's global `env`). Returns the processes restarted.
    pub(super) async fn roll(
        &self,
        before: &[Arc<ProcessSpec>],
        final_specs: &[Arc<ProcessSpec>],
        changed: &[String],
        defer: bool,
    ) -> Result<Vec<String>, NodeError> {
        let old_spec = |n: &str| before.iter().find(|s| s.name == n).cloned();
        let mut restarted = Vec::new();
        for (k, n) in changed.iter().enumerate() {
            // The specs with the changed processes done so far on the new spec.
            let mixed: Vec<Arc<ProcessSpec>> = final_specs
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
            match defer {
                true => self.supervisor.sync_deferred(mixed).await?,
                false => self.supervisor.sync(mixed).await?,
            }
            if was_up {
                self.supervisor.start(n).await?;
                self.supervisor.wait_up(vec![n.clone()]).await?;
                restarted.push(n.clone());
            }
        }
        Ok(restarted)
    }
}
