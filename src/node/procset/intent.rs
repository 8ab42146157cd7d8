//! The operator's intent: start, stop and restart record whether a process is meant to run
//! (`started`, `stopped`) in the state database before acting, so the next bring-up (a restart,
//! a handoff, a failover) runs what the operator last asked for.

use std::time::Duration;

use super::super::{Node, NodeError};
use super::{IntentChange, change};
use crate::events::ChangeAction;
use crate::store::{Intent, SetChange};

impl Node {
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
