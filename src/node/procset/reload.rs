//! A reload of the config file (`PUT /config`, SIGHUP in `serve`): the new file's stacks take
//! the place of the old file's, the stacks the API added or changed are kept, and only the
//! difference is acted on.
//!
//! Invariants:
//! - Nothing is written, committed or touched unless the new config is valid together with the
//!   kept stacks, no node-only setting differs (storage, `node_id`, `stacks_dir`, lease) and
//!   the set is at the expected revision; a dry run stops there, with the same answer.
//! - The file is written (atomic, 0600) before the change is committed, and put back if the
//!   commit fails: the file and the database never disagree about what the reload did.
//! - Processes of unchanged stacks keep their pids; one whose resolved spec still differs (a
//!   new global `env`) takes it at its next start. Changed stacks restart one process at a
//!   time, each ready before the next, and keep the operator's intents.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::super::{Node, NodeError};
use super::{Reloaded, SetView, Stack, change, check_probes, check_revision, merge};
use crate::config::{self, Config, ProcessSpec, StackEntry};
use crate::events::ChangeAction;
use crate::store::{Intent, Origin, SetChange, StoredStack};

/// The settings a reload writes to the file that take effect at the next start only.
const NEXT_START: [&str; 4] = ["hooks", "webhooks", "replication", "checkpoint"];

/// How a reload runs.
#[derive(Clone, Debug, Default)]
pub struct ReloadOptions {
    /// Say what the reload would do, and do nothing.
    pub dry_run: bool,
    /// The revision the set must be at (`If-Match`).
    pub expected: Option<u64>,
    /// Who asked (the token's `sub`), for the events.
    pub by: Option<String>,
    /// Where to write the new file and its bytes; `None`: it is on disk already (SIGHUP).
    pub write: Option<(PathBuf, Vec<u8>)>,
}

/// What a reload does to processes, worked out before anything is done.
struct Work {
    answer: Reloaded,
    next: SetView,
    /// Processes gone (removed stacks, fewer instances): stopped, then dropped.
    stopping: Vec<String>,
    /// Processes of changed stacks whose spec differs: restarted, rolling.
    restarting: Vec<String>,
    /// New processes (added stacks, more instances).
    starting: Vec<Arc<ProcessSpec>>,
}

impl Node {
    /// Reload the config file with `new` (parsed and validated on its own already).
    pub async fn reload(&self, new: Config, opts: ReloadOptions) -> Result<Reloaded, NodeError> {
        let old_file = self.config();
        let fields = config::plan(&old_file, &new).node_specific;
        if !fields.is_empty() {
            return Err(NodeError::NodeOnly { fields });
        }
        self.require_owner()?;
        let _lock = self.set_lock.lock().await;
        let (store, view) = self.owned_set().await?;
        check_revision(&view, opts.expected)?;
        let set = store
            .process_set()
            .await?
            .ok_or_else(|| NodeError::NotOwner {
                detail: "the process set is not loaded yet; retry in a moment".into(),
            })?;
        let work = self.work_out(&old_file, &new, &view, &set.removed).await?;
        if opts.dry_run {
            return Ok(Reloaded {
                dry_run: true,
                ..work.answer
            });
        }
        let old_bytes = match &opts.write {
            Some((path, bytes)) => Some(write_file(path, bytes.clone()).await?),
            None => None,
        };
        let touched = !(work.stopping.is_empty()
            && work.restarting.is_empty()
            && work.starting.is_empty()
            && work.answer.env_affected.is_empty());
        let mut revision = view.revision;
        if touched {
            let file = work
                .next
                .stacks
                .iter()
                .filter(|s| s.origin == Origin::File)
                .map(|s| StoredStack {
                    name: s.entry.name().into(),
                    origin: Origin::File,
                    spec: serde_json::to_string(&s.entry).unwrap_or_default(),
                })
                .collect();
            let commit = SetChange::Reload {
                file,
                dropped: work.stopping.clone(),
            };
            match store.change_process_set(commit, Some(view.revision)).await {
                Ok(r) => revision = r,
                Err(e) => {
                    if let (Some((path, _)), Some(Some(old))) = (&opts.write, old_bytes) {
                        let _ = write_file(path, old).await;
                    }
                    return Err(e.into());
                }
            }
        }
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = std::sync::Arc::new(new);
        let Work {
            mut answer,
            next,
            stopping,
            restarting,
            starting,
        } = work;
        answer.revision = revision;
        let mut intents = next.intents.clone();
        intents.retain(|k, _| !stopping.contains(k));
        let final_specs = next.specs.clone();
        self.publish(SetView {
            revision,
            intents: intents.clone(),
            ..next
        });
        if !touched {
            return Ok(answer);
        }
        self.ship().await;
        self.announce_reload(&answer, &stopping, &restarting, &starting, &opts.by)
            .await;
        let stops = stopping.iter().map(|n| self.supervisor.stop(n, None));
        for r in futures::future::join_all(stops).await {
            r?;
        }
        self.roll(&view.specs, &final_specs, &restarting, true)
            .await?;
        self.supervisor.sync_deferred(final_specs).await?;
        for s in &starting {
            let run = match intents.get(&s.name) {
                Some(i) => *i == Intent::Started,
                None => s.autostart,
            };
            if run {
                self.supervisor.start(&s.name).await?;
            }
        }
        tracing::info!(
            revision,
            added = answer.added.len(),
            removed = answer.removed.len(),
            changed = answer.changed.len(),
            unchanged = answer.unchanged.len(),
            kept = answer.kept.len(),
            "reloaded the config file"
        );
        Ok(answer)
    }

    /// The plan of reloading `new` over the set of `view`, checked in full.
    async fn work_out(
        &self,
        old_file: &Config,
        new: &Config,
        view: &SetView,
        removed: &[String],
    ) -> Result<Work, NodeError> {
        let stacks = merge(&new.stacks, &view.stacks, removed);
        let orphaned = dependencies_removed_under_kept_stacks(&view.stacks, &stacks);
        if !orphaned.is_empty() {
            return Err(NodeError::Invalid(orphaned));
        }
        let next = self.view_with(new, view.revision, stacks, view.intents.clone());
        // Validation reads the user database (a process's `user` and `group`): off the runtime.
        let whole = next.config.clone();
        let problems = tokio::task::spawn_blocking(move || config::validate(&whole))
            .await
            .unwrap_or_else(|e| vec![config::Problem::new("", format!("not checked: {e}"))]);
        if !problems.is_empty() {
            return Err(NodeError::Invalid(problems));
        }
        let plan = config::plan(&view.config, &next.config);
        let kept: Vec<String> = next
            .stacks
            .iter()
            .filter(|s| s.origin == Origin::Api)
            .map(|s| s.entry.name().to_string())
            .collect();
        let changed_stack = |stack: &str| plan.changed.iter().any(|c| c.name == stack);
        let before: HashMap<&str, &Arc<ProcessSpec>> =
            view.specs.iter().map(|s| (s.name.as_str(), s)).collect();
        let after: HashMap<&str, &Arc<ProcessSpec>> =
            next.specs.iter().map(|s| (s.name.as_str(), s)).collect();
        let stopping = view
            .specs
            .iter()
            .filter(|s| !after.contains_key(s.name.as_str()))
            .map(|s| s.name.clone())
            .collect();
        let starting: Vec<Arc<ProcessSpec>> = next
            .specs
            .iter()
            .filter(|s| !before.contains_key(s.name.as_str()))
            .cloned()
            .collect();
        let differs = |s: &&Arc<ProcessSpec>| before.get(s.name.as_str()).is_some_and(|b| *b != *s);
        let (restarting, deferred): (Vec<&Arc<ProcessSpec>>, Vec<&Arc<ProcessSpec>>) = next
            .specs
            .iter()
            .filter(differs)
            .partition(|s| changed_stack(&s.stack));
        let mut probed: Vec<Arc<ProcessSpec>> = starting.clone();
        probed.extend(restarting.iter().map(|s| Arc::clone(s)));
        check_probes(&probed)?;
        let answer = Reloaded {
            revision: view.revision,
            added: plan.added,
            removed: plan.removed,
            changed: plan.changed,
            unchanged: plan
                .unchanged
                .into_iter()
                .filter(|n| !kept.contains(n))
                .collect(),
            kept,
            env_affected: deferred.iter().map(|s| s.name.clone()).collect(),
            next_start: next_start(old_file, new),
            dry_run: false,
        };
        Ok(Work {
            answer,
            restarting: restarting.iter().map(|s| s.name.clone()).collect(),
            stopping,
            starting,
            next,
        })
    }

    /// One event per process the reload touches.
    async fn announce_reload(
        &self,
        answer: &Reloaded,
        stopping: &[String],
        restarting: &[String],
        starting: &[Arc<ProcessSpec>],
        by: &Option<String>,
    ) {
        let revision = answer.revision;
        let fields_of = |n: &str| {
            answer
                .changed
                .iter()
                .find(|c| n == c.name || n.strip_prefix(&c.name).is_some_and(is_instance))
                .map(|c| c.fields.join(", "))
                .unwrap_or_default()
        };
        for n in stopping {
            let c = change(ChangeAction::Remove, by.clone(), revision);
            self.supervisor
                .announce(n, c, "removed by a config reload".into())
                .await;
        }
        for n in restarting {
            let c = change(ChangeAction::Replace, by.clone(), revision);
            let why = format!("changed by a config reload ({})", fields_of(n));
            self.supervisor.announce(n, c, why).await;
        }
        for s in starting {
            let c = change(ChangeAction::Add, by.clone(), revision);
            self.supervisor
                .announce(&s.name, c, "added by a config reload".into())
                .await;
        }
    }
}

/// `-3` of `web-3`.
fn is_instance(tail: &str) -> bool {
    tail.strip_prefix('-')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The settings of [`NEXT_START`] that differ between the two files.
fn next_start(old: &Config, new: &Config) -> Vec<String> {
    let (a, b) = (
        serde_json::to_value(old).unwrap_or_default(),
        serde_json::to_value(new).unwrap_or_default(),
    );
    NEXT_START
        .iter()
        .filter(|k| a.get(**k) != b.get(**k))
        .map(|k| k.to_string())
        .collect()
}

/// Write `bytes` to `path` (atomic, 0600) off the runtime; returns what was there before.
async fn write_file(path: &std::path::Path, bytes: Vec<u8>) -> Result<Option<Vec<u8>>, NodeError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let before = std::fs::read(&owned).ok();
        config::persist(&owned, &bytes).map(|()| before)
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))
    .and_then(|r| r)
    .map_err(|source| NodeError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The stacks added through the API, which a reload keeps, that depend on a stack the new file
/// removes: refused, as `DELETE /processes/{name}` refuses without `force`, rather than the
/// dependency dropped unsaid (`view_with` drops names the set does not have).
fn dependencies_removed_under_kept_stacks(
    before: &[Stack],
    after: &[Stack],
) -> Vec<config::Problem> {
    let has = |stacks: &[Stack], name: &str| stacks.iter().any(|s| s.entry.name() == name);
    let kept = after.iter().filter(|s| s.origin == Origin::Api);
    kept.filter_map(|s| match &s.entry {
        StackEntry::Inline(p) => Some(p),
        StackEntry::Dir(_) => None,
    })
    .flat_map(|p| {
        p.depends_on
            .iter()
            .filter(|d| has(before, d) && !has(after, d))
            .map(move |d| {
                config::Problem::new(
                    "stacks",
                    format!(
                        "{name:?} (added through the API, kept by a reload) depends on {d:?}, \
                         which this config removes: keep {d:?} in the file, or first change or \
                         remove {name:?} (PUT or DELETE /processes/{name})",
                        name = p.name
                    ),
                )
            })
    })
    .collect()
}
