//! The storage lease: at most one node owns an environment (`bucket/key_prefix`) at a time.
//!
//! The lease is one object, `lease.json` ([`LeaseRecord`]), changed only by conditional
//! writes: created with put-if-absent, renewed, released or taken over with put-if-match on the
//! ETag that was read. Every new holder writes the previous epoch + 1; the epoch is the fencing
//! token that stamps everything the holder writes to storage.
//!
//! Parts: [`record`] (the object), [`clock`] (wall and monotonic time, injectable),
//! [`timing`] (the pure time rules), [`ops`] (one acquire / renew / release against storage,
//! with read-back after an ambiguous conditional write), [`fence`] (the cheap check every
//! writer makes), [`leaser`] (the background task that renews, polls as a standby, and
//! publishes the node's [`Role`]).
//!
//! # Why two owners cannot overlap
//!
//! Let `skew` be `lease.clock_skew` (the most two nodes' wall clocks may disagree) and
//! `margin = skew + ttl / 10` ([`Timing::safety_margin`]).
//! - A holder sends a write at true time `S`, stamped `expires_at = its wall clock at S + ttl`.
//!   It trusts the lease until `S + ttl - margin`, measured on its monotonic clock from the
//!   moment it sent the write (not when the answer came: a slow answer only shortens trust). It
//!   never uses its wall clock for that, so a clock step cannot extend it.
//! - A standby replaces a live record only when its own wall clock reads
//!   `now > expires_at + skew`. Since its clock is at most `skew` behind the holder's, that is
//!   after true time `S + ttl`, and its put-if-match on the ETag it read fails if the holder
//!   renewed meanwhile.
//! - So the holder's trust ends at least `margin` before any standby can take over. `skew`
//!   of it keeps the holder safe on its own even if a standby ran with no skew allowance;
//!   `ttl / 10` (3 s by default) covers a write the holder let through its fence just before
//!   the end and that reaches storage a little later, and the drift of monotonic clocks.
//! - A released lease (written by the holder after it closed its own fence) is free at once.
//!
//! Renewal runs every `ttl / 3`, retrying every `ttl / 15` after a failure, so the holder gets
//! several attempts before `ttl - margin` (with the defaults, 30 s TTL and 2 s skew: renew
//! every 10 s, trust lasts 25 s after the last confirmed write, lost 5 s before expiry).
//! When trust runs out, the fence refuses by itself and the leaser publishes [`Role::Lost`]:
//! always before the record's `expires_at`.
//!
//! Epochs continue from the highest one a node has seen, but a node that never saw the object
//! starts again at 1: `lease.json` must never be deleted while stamped data exists.
//!
//! A conditional write whose answer was lost may have landed: S3 clients retry, and the retry
//! then reports a failed precondition. After a failed precondition the record is read back and
//! compared with the one written; a write that timed out is remembered and adopted if a later
//! read shows it landed.

pub mod clock;
pub mod fence;
pub mod leaser;
pub mod ops;
pub mod record;
mod role;
pub mod timing;
pub mod watchdog;

use std::path::Path;
use std::time::Duration;

use time::OffsetDateTime;

use crate::objstore::StorageError;

pub use clock::{Clock, DynClock, FakeClock, RuntimeClock, SystemClock};
pub use fence::{Fence, Fenced};
pub use leaser::{LeaseHandle, Leaser, ReleaseOutcome, Tenure};
pub use ops::{Held, Lease};
pub use record::{FORMAT_VERSION, LEASE_KEY, LeaseRecord};
pub use role::{LeaseEvent, LeaseEventKind, LeaseStats, LeaseView, LostReason, Role};
pub use timing::{Claim, Timing};
pub use watchdog::{FenceStatus, Watchdog};

/// Everything that can go wrong with the lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "the lease is held by {} (epoch {}) until {}; it can be taken after {} unless renewed, \
         or at once when its holder releases it",
        .holder.holder, .holder.epoch, rfc3339(.holder.expires_at), rfc3339(*.free_at)
    )]
    Held {
        holder: LeaseView,
        free_at: OffsetDateTime,
    },
    #[error("the lease was taken over: it is now {}", describe(.current))]
    Superseded { current: Option<LeaseView> },
    #[error("this node does not hold the lease; it is {}", describe(.current))]
    NotHeld { current: Option<LeaseView> },
    #[error("lease storage request {op} failed: {source}")]
    Storage {
        op: &'static str,
        #[source]
        source: StorageError,
    },
    #[error("lease storage request {op} did not complete within {after:?}; is storage reachable?")]
    Timeout { op: &'static str, after: Duration },
    #[error("the lease object is malformed ({reason}); fix or delete lease.json by hand")]
    Corrupt { reason: String },
    #[error(
        "the lease object has format version {found:?} but this build reads version \
         {supported}; run the same state-manager version on every node"
    )]
    UnsupportedVersion { found: Option<u32>, supported: u32 },
    #[error("invalid {field}: {problem}")]
    Config {
        field: &'static str,
        problem: &'static str,
    },
    #[error(
        "invalid node_id {id:?}: must be 1-64 characters of letters, digits, '.', '_' or '-', \
         starting with a letter or digit"
    )]
    InvalidNodeId { id: String },
    #[error("the lease task has stopped")]
    Stopped,
}

/// RFC 3339 text of a time, for messages and logs.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn describe(view: &Option<LeaseView>) -> String {
    match view {
        None => "not held by anyone (no lease object)".into(),
        Some(v) if v.released => format!("released by {} (epoch {})", v.holder, v.epoch),
        Some(v) => format!(
            "held by {} (epoch {}) until {}",
            v.holder,
            v.epoch,
            rfc3339(v.expires_at)
        ),
    }
}

/// This node's lease identity: `configured` (the config's `node_id`) if given, else derived
/// from the host name and the data directory, so that it is stable across restarts and two
/// data directories on one host are two nodes.
pub fn node_id(configured: Option<&str>, data_dir: &Path) -> Result<String, LeaseError> {
    if let Some(id) = configured {
        return match crate::config::is_name(id) {
            true => Ok(id.to_string()),
            false => Err(LeaseError::InvalidNodeId { id: id.to_string() }),
        };
    }
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(derive_node_id(&host, data_dir))
}

/// This data directory's instance id, from the file `path` (created once, 0600, atomically:
/// 32 random hex digits). A record naming it and this node's id was written by an earlier
/// process on this very directory ([`Timing::claim_as`]). Blocking: call it off the runtime.
pub fn instance_id(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) if is_instance_id(text.trim()) => return Ok(text.trim().to_string()),
        Ok(_) => {
            tracing::warn!(path = %path.display(), "the instance id file is malformed; writing a new one")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = format!("{:032x}", rand::random::<u128>());
    crate::durable::write_file(path, format!("{id}\n").as_bytes())?;
    Ok(id)
}

fn is_instance_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `<host>-<8 hex digits of blake3(host, absolute data dir)>`, the host reduced to name
/// characters and cut to 48 of them (`node` if nothing is left).
pub fn derive_node_id(host: &str, data_dir: &Path) -> String {
    let dir = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let mut h = blake3::Hasher::new();
    h.update(host.as_bytes());
    h.update(b"\0");
    h.update(dir.as_os_str().as_encoded_bytes());
    let hash = h.finalize().to_hex();
    let clean: String = host
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '-',
        })
        .skip_while(|c| !c.is_ascii_alphanumeric())
        .take(48)
        .collect();
    let clean = if clean.is_empty() { "node" } else { &clean };
    format!("{clean}-{}", &hash[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_valid_and_distinct_per_data_dir() {
        let a = derive_node_id("web-1.example", Path::new("/var/lib/sm"));
        assert_eq!(a, derive_node_id("web-1.example", Path::new("/var/lib/sm")));
        assert!(a.starts_with("web-1.example-"), "{a}");
        assert_ne!(
            a,
            derive_node_id("web-1.example", Path::new("/var/lib/sm2"))
        );
        assert_ne!(a, derive_node_id("web-2.example", Path::new("/var/lib/sm")));
        for host in ["", "__", "ünïcode host", &"x".repeat(200), "-lead"] {
            let id = derive_node_id(host, Path::new("/d"));
            assert!(crate::config::is_name(&id), "{host:?} gave {id:?}");
        }
    }

    #[test]
    fn the_instance_id_is_created_once_private_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("instance-id");
        let id = instance_id(&path).unwrap();
        assert!(is_instance_id(&id), "{id}");
        assert_eq!(instance_id(&path).unwrap(), id);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let other = instance_id(&tempfile::tempdir().unwrap().path().join("i")).unwrap();
        assert_ne!(other, id);
        std::fs::write(&path, "garbage").unwrap();
        let fresh = instance_id(&path).unwrap();
        assert!(is_instance_id(&fresh) && fresh != id, "{fresh}");
    }

    #[test]
    fn configured_ids_are_validated() {
        assert_eq!(node_id(Some("node-a"), Path::new("/d")).unwrap(), "node-a");
        let e = node_id(Some("../x"), Path::new("/d")).unwrap_err();
        assert!(matches!(e, LeaseError::InvalidNodeId { .. }));
        assert!(e.to_string().contains("node_id"));
        let derived = node_id(None, Path::new("/d")).unwrap();
        assert!(crate::config::is_name(&derived), "{derived}");
    }
}
