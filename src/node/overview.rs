//! What `GET /` and the metrics show of the node: its role (the lease's role, plus
//! `taking_over` while an owner brings the environment up), who holds the lease, replication,
//! the last checkpoint, the operation under way, the last takeover and whether storage works.

use serde::Serialize;
use time::OffsetDateTime;

use super::{LastRestore, Node, Operation, Takeover};
use crate::checkpoint::CheckpointSummary;
use crate::lease::{FenceStatus, Role};
use crate::objstore::StorageHealth;
use crate::replication::ReplicationStatus;

/// This node's part in the environment, as `GET /` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// The environment runs here.
    Owner,
    /// The lease is ours; the environment is being restored and started.
    TakingOver,
    /// Another node holds the lease, or nobody does and this node waits for it.
    Standby,
    /// This node gave the lease up and does not take it back by itself.
    Released,
    /// This node lost the lease without releasing it.
    Lost,
    /// This node has not looked at the lease yet.
    Starting,
}

impl NodeRole {
    pub const ALL: [NodeRole; 6] = [
        NodeRole::Owner,
        NodeRole::TakingOver,
        NodeRole::Standby,
        NodeRole::Released,
        NodeRole::Lost,
        NodeRole::Starting,
    ];

    /// The word in the API and the metrics' `role` label.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Owner => "owner",
            NodeRole::TakingOver => "taking_over",
            NodeRole::Standby => "standby",
            NodeRole::Released => "released",
            NodeRole::Lost => "lost",
            NodeRole::Starting => "starting",
        }
    }
}

/// The node's part of `GET /`.
#[derive(Clone, Debug)]
pub struct Overview {
    pub role: NodeRole,
    pub lease: LeaseOverview,
    pub replication: Option<ReplicationStatus>,
    pub last_checkpoint: Option<CheckpointSummary>,
    pub operation: Option<Operation>,
    pub storage: String,
    pub storage_health: StorageHealth,
    pub last_error: Option<String>,
    pub last_takeover: Option<Takeover>,
    pub last_restore: Option<LastRestore>,
    /// The revision of the process set, once this node loaded it.
    pub revision: Option<u64>,
}

/// Who holds the lease, as this node sees it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LeaseOverview {
    pub node_id: String,
    /// The holder (this node when it is the owner), if anyone holds it.
    pub holder: Option<String>,
    pub epoch: Option<u64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// The holder gave it up: it can be taken at once.
    pub released: bool,
    /// While this node is the owner: until when it trusts the lease without another renewal
    /// (its processes stop before then, and the fence process kills them if they have not).
    #[serde(with = "time::serde::rfc3339::option")]
    pub trusted_until: Option<OffsetDateTime>,
    /// The fence process of this node, when it runs one.
    pub fence: Option<FenceStatus>,
}

impl Node {
    pub fn overview(&self) -> Overview {
        let node_id = self.node_id().to_string();
        let trusted_until = match self.lease.role() {
            Role::Owner { trusted_until, .. } => Some(trusted_until),
            _ => None,
        };
        let (role, holder, epoch, expires_at, released) = match self.lease.role() {
            Role::Owner {
                epoch, expires_at, ..
            } => (
                NodeRole::Owner,
                Some(node_id.clone()),
                Some(epoch),
                Some(expires_at),
                false,
            ),
            Role::Standby { lease: Some(l) } => (
                NodeRole::Standby,
                Some(l.holder),
                Some(l.epoch),
                Some(l.expires_at),
                l.released,
            ),
            Role::Standby { lease: None } => (NodeRole::Standby, None, None, None, false),
            Role::Released { epoch } => (NodeRole::Released, None, Some(epoch), None, true),
            Role::Lost { epoch, .. } => (NodeRole::Lost, None, Some(epoch), None, false),
            Role::Starting => (NodeRole::Starting, None, None, None, false),
        };
        let status = self.status.borrow().clone();
        // The lease is ours but the environment is still being restored and started.
        let role = if role == NodeRole::Owner && !status.up {
            NodeRole::TakingOver
        } else {
            role
        };
        Overview {
            role,
            lease: LeaseOverview {
                node_id,
                holder,
                epoch,
                expires_at,
                released,
                trusted_until,
                fence: self.lease.fence().watchdog().map(|w| w.status()),
            },
            replication: self.replication.borrow().clone(),
            last_checkpoint: status.last_checkpoint,
            operation: status.operation,
            storage: self.storage(),
            storage_health: self.storage_health(),
            last_error: status.last_error,
            last_takeover: status.last_takeover,
            last_restore: status.last_restore,
            revision: status.revision,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::OperationKind;

    #[test]
    fn roles_and_operations_serialise_as_their_words() {
        for role in NodeRole::ALL {
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
        }
        let kinds = [
            OperationKind::Checkpoint,
            OperationKind::CheckpointDeletion,
            OperationKind::Restore,
            OperationKind::Release,
            OperationKind::Takeover,
        ];
        for kind in kinds {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert_eq!(
            OperationKind::CheckpointDeletion.as_str(),
            "checkpoint deletion"
        );
        assert_eq!(NodeRole::TakingOver.as_str(), "taking_over");
    }
}
