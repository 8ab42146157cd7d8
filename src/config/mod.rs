//! The configuration: one typed tree, parsed strictly and validated in full.
//!
//! Every struct denies unknown fields and gives every field a default at the serde level, so that
//! [`load::parse`] can diagnose each field on its own and report every problem at once. Required
//! values (a process name, a command) are checked by [`validate`], which also collects every
//! problem before returning.
//!
//! One file per section, each with its types and its own rules: [`settings`] (the whole file and
//! the settings for every process), [`process`] (stacks), `command`, [`probe`], [`storage`]
//! (storage, replication, checkpoints, lease), [`hooks`] (hooks and webhooks); `limits` bounds
//! every duration and number; [`strict`] is the one way JSON becomes a typed value (an object
//! where an object is meant), for the file and every request body. [`validate`] runs
//! them all and owns the checks across processes (names, dependency cycles, ports); `load`
//! parses and persists, `resolve` turns stacks into process specs.
//!
//! Invariant: a `Config` that came out of [`parse`] has passed [`validate`]; code downstream relies
//! on names being unique, references resolving and durations being sane.

mod command;
mod duration;
pub mod hooks;
mod limits;
mod load;
mod plan;
pub mod probe;
pub mod process;
#[cfg(test)]
mod proptests;
mod resolve;
pub mod settings;
pub mod storage;
pub mod strict;
mod validate;

pub use command::CommandSpec;
pub use duration::Dur;
pub use hooks::{HookConfig, HooksConfig, WebhookConfig};
pub use load::{
    ConfigError, Problem, parse, parse_file, parse_stack_into, parse_with_env, persist, redacted,
};
pub use plan::{ChangedStack, ReloadPlan, changed_fields, plan};
pub use probe::{ProbeConfig, TcpTarget};
pub use process::{MAX_INSTANCES, OnExit, ProcessConfig, StackEntry, instance_names, parse_signal};
pub use resolve::{ProcessSpec, RestartPolicy, StackSource, resolve, share};
pub use settings::{Config, apply_env};
pub use storage::{CheckpointConfig, LeaseConfig, ReplicationConfig, StorageConfig};
pub use validate::{NAME_GLOB, NameGlob, is_name, name_glob, validate};

/// The problems of a config given as JSON, for the rules' tests of every section.
#[cfg(test)]
fn problems_of(json: &str) -> Vec<Problem> {
    let c: Config = serde_json::from_str(json).unwrap();
    validate(&c)
}
