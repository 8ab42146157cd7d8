//! The lease object, `lease.json` under the environment's key prefix, and its encoding.
//!
//! Invariants: `epoch` only grows (every new holder writes the previous epoch + 1; a renewal
//! or a release keeps it), so it can stamp everything a holder writes; times are UTC, written
//! in RFC 3339 with millisecond precision so that a record read back compares equal to the
//! one written; a record of another format version is never interpreted (a node that cannot
//! read the lease never takes it).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::LeaseError;

/// The key of the lease object, relative to the key prefix.
pub const LEASE_KEY: &str = "lease.json";

/// The format version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// The lease as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRecord {
    /// Always [`FORMAT_VERSION`] for records this code writes.
    pub version: u32,
    /// Node id of the holder (or of the last holder, when `released`).
    pub holder: String,
    /// Fencing token: +1 on every new holder.
    pub epoch: u64,
    /// When this holder took the lease (its wall clock).
    #[serde(with = "time::serde::rfc3339")]
    pub acquired_at: OffsetDateTime,
    /// After this instant plus the clock-skew allowance, another node may take the lease.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The last renewal (or the acquisition or release).
    #[serde(with = "time::serde::rfc3339")]
    pub renewed_at: OffsetDateTime,
    /// Renewals by this holder in this epoch.
    pub renew_count: u64,
    /// The holder gave the lease up: anyone may take it at once.
    pub released: bool,
    /// The instance id of the holder's data directory (see [`super::instance_id`]): a node
    /// restarting on that same directory knows the holder is gone and reclaims at once.
    /// Absent in records of nodes that had none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

impl LeaseRecord {
    /// A fresh lease for `holder` at `epoch`, valid for `ttl` from `now`.
    pub fn acquired(
        holder: &str,
        epoch: u64,
        now: OffsetDateTime,
        ttl: std::time::Duration,
    ) -> LeaseRecord {
        let now = millis(now);
        LeaseRecord {
            version: FORMAT_VERSION,
            holder: holder.to_string(),
            epoch,
            acquired_at: now,
            expires_at: millis(now + ttl),
            renewed_at: now,
            renew_count: 0,
            released: false,
            instance: None,
        }
    }

    /// This record naming `instance` as the holder's data directory.
    pub fn with_instance(mut self, instance: Option<&str>) -> LeaseRecord {
        self.instance = instance.map(str::to_string);
        self
    }

    /// This record extended to `now + ttl`.
    pub fn renewed(&self, now: OffsetDateTime, ttl: std::time::Duration) -> LeaseRecord {
        let now = millis(now);
        LeaseRecord {
            expires_at: millis(now + ttl),
            renewed_at: now,
            renew_count: self.renew_count + 1,
            ..self.clone()
        }
    }

    /// This record given up at `now`: it expires at once and says so.
    pub fn released(&self, now: OffsetDateTime) -> LeaseRecord {
        let now = millis(now);
        LeaseRecord {
            expires_at: now.min(self.expires_at),
            renewed_at: now,
            released: true,
            ..self.clone()
        }
    }

    /// Whether `self` is the same tenure as `other`: same holder, same epoch.
    pub fn same_tenure(&self, other: &LeaseRecord) -> bool {
        self.holder == other.holder && self.epoch == other.epoch
    }

    /// The bytes stored.
    pub fn encode(&self) -> bytes::Bytes {
        let mut v = serde_json::to_vec_pretty(self).expect("a lease record always serializes");
        v.push(b'\n');
        v.into()
    }

    /// Parse stored bytes; another format version or a malformed record is an error.
    pub fn decode(body: &[u8]) -> Result<LeaseRecord, LeaseError> {
        #[derive(Deserialize)]
        struct Version {
            version: Option<u32>,
        }
        let corrupt = |e: serde_json::Error| LeaseError::Corrupt {
            reason: e.to_string(),
        };
        let v: Version = serde_json::from_slice(body).map_err(corrupt)?;
        match v.version {
            Some(FORMAT_VERSION) => serde_json::from_slice(body).map_err(corrupt),
            found => Err(LeaseError::UnsupportedVersion {
                found,
                supported: FORMAT_VERSION,
            }),
        }
    }
}

/// `t` truncated to whole milliseconds (never later than `t`).
fn millis(t: OffsetDateTime) -> OffsetDateTime {
    let ns = t.nanosecond();
    t.replace_nanosecond(ns - ns % 1_000_000)
        .expect("a truncated nanosecond is in range")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use time::macros::datetime;

    fn rec() -> LeaseRecord {
        LeaseRecord::acquired(
            "node-a",
            7,
            datetime!(2030-01-01 0:00:00.123456789 UTC),
            Duration::from_secs(30),
        )
    }

    #[test]
    fn round_trips_exactly_with_millisecond_times() {
        let r = rec().renewed(datetime!(2030-01-01 0:00:10.5 UTC), Duration::from_secs(30));
        assert_eq!(r.acquired_at, datetime!(2030-01-01 0:00:00.123 UTC));
        assert_eq!(r.expires_at, datetime!(2030-01-01 0:00:40.5 UTC));
        assert_eq!(r.renew_count, 1);
        let text = String::from_utf8(r.encode().to_vec()).unwrap();
        assert!(
            text.contains("\"expires_at\": \"2030-01-01T00:00:40.5Z\""),
            "{text}"
        );
        assert_eq!(LeaseRecord::decode(text.as_bytes()).unwrap(), r);
    }

    #[test]
    fn release_keeps_epoch_and_expires_now() {
        let r = rec().released(datetime!(2030-01-01 0:00:05 UTC));
        assert!(r.released);
        assert_eq!(r.epoch, 7);
        assert_eq!(r.expires_at, datetime!(2030-01-01 0:00:05 UTC));
        assert!(r.same_tenure(&rec()));
    }

    #[test]
    fn other_versions_and_garbage_are_typed_errors() {
        let mut v: serde_json::Value = serde_json::from_slice(&rec().encode()).unwrap();
        v["version"] = 2.into();
        let err = LeaseRecord::decode(v.to_string().as_bytes()).unwrap_err();
        assert!(matches!(
            err,
            LeaseError::UnsupportedVersion { found: Some(2), .. }
        ));
        assert!(matches!(
            LeaseRecord::decode(b"{\"holder\": 1"),
            Err(LeaseError::Corrupt { .. })
        ));
        assert!(matches!(
            LeaseRecord::decode(b"{\"holder\": \"x\"}"),
            Err(LeaseError::UnsupportedVersion { found: None, .. })
        ));
    }
}
