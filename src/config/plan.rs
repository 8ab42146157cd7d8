//! The plan of a config reload: how a new config differs from the applied one, stack by stack,
//! so that the reload (and its dry run) can say what it will do before doing it.
//!
//! Invariants:
//! - Every stack of either config is in exactly one of `added`, `removed`, `changed`,
//!   `unchanged`, each list in its config's order (`removed` in the old one's).
//! - A stack is `changed` exactly when its spec, as the config writes it, differs; `fields`
//!   names the top-level fields that differ.
//! - `node_specific` lists the settings that cannot change while the node runs (storage,
//!   `node_id`, `stacks_dir`, lease); a reload that has any is refused, not half applied.

use serde::Serialize;
use serde_json::Value;

use super::{Config, StackEntry};

/// The settings each node keeps from its own start: changing them means a restart.
const NODE_SPECIFIC: [&str; 4] = ["storage", "node_id", "stacks_dir", "lease"];

/// One stack whose spec differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ChangedStack {
    pub name: String,
    /// The top-level fields of the spec that differ (`command`, `env`, …).
    pub fields: Vec<String>,
}

/// What a reload from one config to another does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReloadPlan {
    /// Stacks only the new config has: started (unless `autostart: false`).
    pub added: Vec<String>,
    /// Stacks only the old config has: stopped and removed.
    pub removed: Vec<String>,
    /// Stacks whose spec differs: restarted with the new one, rolling.
    pub changed: Vec<ChangedStack>,
    /// Stacks whose spec is the same: untouched, same pids.
    pub unchanged: Vec<String>,
    /// The unchanged stacks that a change of the global `env` concerns: they get it at their
    /// next start (a changed or added stack gets it at once).
    pub env_next_start: Vec<String>,
    /// Settings that differ but cannot change while the node runs (`storage`, `node_id`,
    /// `stacks_dir`, `lease`): edit the node's file and restart it instead.
    pub node_specific: Vec<String>,
}

impl ReloadPlan {
    /// Whether applying the plan would touch nothing.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// The plan of reloading `new` over `old`.
pub fn plan(old: &Config, new: &Config) -> ReloadPlan {
    let find = |c: &'_ Config, name: &str| -> Option<Value> {
        c.stacks
            .iter()
            .find(|e| e.name() == name)
            .map(|e| serde_json::to_value(e).unwrap_or_default())
    };
    let mut p = ReloadPlan::default();
    for e in &new.stacks {
        let name = e.name().to_string();
        match find(old, &name) {
            None => p.added.push(name),
            Some(before) => {
                let fields = changed_fields(&before, &spec(e));
                if fields.is_empty() {
                    p.unchanged.push(name);
                } else {
                    p.changed.push(ChangedStack { name, fields });
                }
            }
        }
    }
    p.removed = old
        .stacks
        .iter()
        .map(|e| e.name().to_string())
        .filter(|n| find(new, n).is_none())
        .collect();
    if old.env != new.env {
        p.env_next_start = p.unchanged.clone();
    }
    let (a, b) = (top(old), top(new));
    p.node_specific = NODE_SPECIFIC
        .iter()
        .filter(|k| a.get(**k) != b.get(**k))
        .map(|k| k.to_string())
        .collect();
    p
}

fn spec(e: &StackEntry) -> Value {
    serde_json::to_value(e).unwrap_or_default()
}

fn top(c: &Config) -> serde_json::Map<String, Value> {
    match serde_json::to_value(c) {
        Ok(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    }
}

/// The top-level fields whose values differ between two specs (as JSON), sorted.
pub fn changed_fields(old: &Value, new: &Value) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        super::super::parse_with_env(text, |_| None).unwrap()
    }

    #[test]
    fn every_stack_lands_in_exactly_one_list() {
        let old = config(
            r#"{"stacks": [{"name": "a", "command": "sleep 1"}, {"name": "b", "command": "sleep 1"},
                           {"name": "c", "command": "sleep 1", "env": {"X": "1"}}]}"#,
        );
        let new = config(
            r#"{"env": {"G": "2"},
                "stacks": [{"name": "c", "command": "sleep 2", "env": {"X": "2"}},
                           {"name": "a", "command": "sleep 1"}, {"name": "d", "command": "sleep 1"}]}"#,
        );
        let p = plan(&old, &new);
        assert_eq!(p.added, ["d"]);
        assert_eq!(p.removed, ["b"]);
        assert_eq!(p.changed.len(), 1);
        assert_eq!(p.changed[0].name, "c");
        assert!(p.changed[0].fields.contains(&"env".to_string()), "{p:?}");
        assert_eq!(p.unchanged, ["a"]);
        assert_eq!(
            p.env_next_start,
            ["a"],
            "the global env concerns the untouched"
        );
        assert!(p.node_specific.is_empty());
        assert!(!p.is_empty());
    }

    #[test]
    fn the_same_config_plans_nothing_and_node_settings_are_named() {
        let old = config(r#"{"stacks": [{"name": "a", "command": "sleep 1"}]}"#);
        assert!(plan(&old, &old).is_empty());
        assert!(plan(&old, &old).env_next_start.is_empty());
        let new = config(r#"{"node_id": "n2", "stacks": [{"name": "a", "command": "sleep 1"}]}"#);
        let p = plan(&old, &new);
        assert!(p.is_empty());
        assert_eq!(p.node_specific, ["node_id"]);
    }
}
