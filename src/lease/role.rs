//! What the lease tells the rest of the node: the current [`Role`] (on a watch channel), the
//! [`LeaseEvent`]s of each tenure (on a broadcast channel) and counters for metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::LeaseRecord;

/// Who holds the lease, as a node last read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LeaseView {
    pub holder: String,
    pub epoch: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub released: bool,
}

impl From<&LeaseRecord> for LeaseView {
    fn from(r: &LeaseRecord) -> Self {
        LeaseView {
            holder: r.holder.clone(),
            epoch: r.epoch,
            expires_at: r.expires_at,
            released: r.released,
        }
    }
}

/// This node's relation to the lease. Anything but `Owner` means: run nothing, write nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Role {
    /// The lease has not been looked at yet.
    Starting,
    /// This node owns the lease.
    Owner {
        epoch: u64,
        #[serde(with = "time::serde::rfc3339")]
        acquired_at: OffsetDateTime,
        /// As written in the lease object by the last renewal.
        #[serde(with = "time::serde::rfc3339")]
        expires_at: OffsetDateTime,
        /// When this node stops trusting the lease unless renewed first (before `expires_at`).
        #[serde(with = "time::serde::rfc3339")]
        trusted_until: OffsetDateTime,
    },
    /// Another node holds the lease (or no one does and this node does not take it on its own).
    Standby { lease: Option<LeaseView> },
    /// This node gave the lease up and waits for an explicit acquire.
    Released { epoch: u64 },
    /// This node held the lease and lost it; it stopped trusting it before it expired.
    Lost { epoch: u64, reason: LostReason },
}

impl Role {
    pub fn is_owner(&self) -> bool {
        matches!(self, Role::Owner { .. })
    }

    /// The epoch owned, if any.
    pub fn owned_epoch(&self) -> Option<u64> {
        match self {
            Role::Owner { epoch, .. } => Some(*epoch),
            _ => None,
        }
    }
}

/// Why a tenure ended without a release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LostReason {
    /// No renewal succeeded before the safety margin; `last_error` is the last failure seen.
    NotRenewed { last_error: Option<String> },
    /// Another write replaced this node's lease object.
    Superseded { current: Option<LeaseView> },
    /// This node stopped renewing without releasing (shut down without release).
    Stopped,
}

/// What happened to a tenure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LeaseEventKind {
    /// `previous`: the record replaced (`None`: the lease object was created).
    Acquired {
        previous: Option<LeaseView>,
    },
    Released,
    Lost {
        reason: LostReason,
    },
}

/// The start or end of this node's ownership. `Acquired` is stamped just before the fence
/// opened, the others just after it closed (or at its deadline, if that came first), so the
/// interval between them covers every moment the fence said yes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeaseEvent {
    #[serde(flatten)]
    pub kind: LeaseEventKind,
    pub epoch: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The same moment on this process's monotonic clock (comparable between the leasers of
    /// one process that use the system clock).
    #[serde(skip)]
    pub mono: Duration,
    /// The `expires_at` of the last record this tenure confirmed.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// Counters for `GET /metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LeaseStats {
    pub acquisitions: u64,
    pub renewals: u64,
    pub renew_failures: u64,
    pub releases: u64,
    pub losses: u64,
    /// Standby looks at the lease that failed (storage unreachable, malformed record).
    pub poll_failures: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub acquisitions: AtomicU64,
    pub renewals: AtomicU64,
    pub renew_failures: AtomicU64,
    pub releases: AtomicU64,
    pub losses: AtomicU64,
    pub poll_failures: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> LeaseStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LeaseStats {
            acquisitions: g(&self.acquisitions),
            renewals: g(&self.renewals),
            renew_failures: g(&self.renew_failures),
            releases: g(&self.releases),
            losses: g(&self.losses),
            poll_failures: g(&self.poll_failures),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn roles_serialize_for_status() {
        let t = datetime!(2030-01-01 0:00 UTC);
        let owner = Role::Owner {
            epoch: 3,
            acquired_at: t,
            expires_at: t,
            trusted_until: t,
        };
        let v = serde_json::to_value(&owner).unwrap();
        assert_eq!(v["role"], "owner");
        assert_eq!(v["epoch"], 3);
        assert_eq!(v["expires_at"], "2030-01-01T00:00:00Z");
        let standby = Role::Standby {
            lease: Some(LeaseView {
                holder: "b".into(),
                epoch: 4,
                expires_at: t,
                released: false,
            }),
        };
        let v = serde_json::to_value(&standby).unwrap();
        assert_eq!(v["role"], "standby");
        assert_eq!(v["lease"]["holder"], "b");
        let lost = Role::Lost {
            epoch: 3,
            reason: LostReason::NotRenewed { last_error: None },
        };
        assert_eq!(
            serde_json::to_value(&lost).unwrap()["reason"]["kind"],
            "not_renewed"
        );
        assert!(owner.is_owner() && !standby.is_owner());
        assert_eq!(owner.owned_epoch(), Some(3));
    }
}
