//! Checkpoint ids: `20250101T120000.123Z-1a2b3c4d` — a UTC timestamp to the millisecond and 32
//! random bits. Ids sort by creation time as plain strings, are safe in URLs and object keys,
//! and every id that comes from outside is parsed strictly (fixed shape, so no traversal).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use super::error::{CheckpointError, Result};

/// Length of every id: 8 + 1 + 6 + 1 + 3 + 1 (`Z`) + 1 (`-`) + 8.
const ID_LEN: usize = 29;

/// The shape of an id, as the API description states it: every id [`CheckpointId::parse`]
/// takes matches it, and an id matching it is either taken or names no calendar day (404).
pub const ID_PATTERN: &str = r"^[0-9]{4}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]\.[0-9]{3}Z-[0-9a-f]{8}$";

/// A validated checkpoint id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckpointId(String);

impl CheckpointId {
    /// A new id for a checkpoint created at `at`.
    pub fn generate(at: OffsetDateTime) -> Self {
        let t = at.to_offset(time::UtcOffset::UTC);
        let id = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z-{:08x}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond(),
            rand::random::<u32>()
        );
        CheckpointId(id)
    }

    /// Parse an id from outside (URL, request body, object key).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |reason| CheckpointError::InvalidId {
            id: s.chars().take(64).collect(),
            reason,
        };
        if s.len() != ID_LEN || !s.is_ascii() {
            return Err(bad("wrong length"));
        }
        let b = s.as_bytes();
        if b[8] != b'T' || b[15] != b'.' || b[19] != b'Z' || b[20] != b'-' {
            return Err(bad("wrong shape"));
        }
        let digits = [0..8, 9..15, 16..19];
        if digits
            .iter()
            .any(|r| !b[r.clone()].iter().all(u8::is_ascii_digit))
        {
            return Err(bad("timestamp has a non-digit"));
        }
        if !b[21..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        {
            return Err(bad("suffix is not 8 lowercase hex digits"));
        }
        let n = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(u32::MAX);
        let ranges = [
            (4..6, 1, 12),
            (6..8, 1, 31),
            (9..11, 0, 23),
            (11..13, 0, 59),
            (13..15, 0, 59),
        ];
        if ranges
            .iter()
            .any(|(r, lo, hi)| !(*lo..=*hi).contains(&n(r.clone())))
        {
            return Err(bad("timestamp has a field out of range"));
        }
        // Well formed (it matches the documented pattern) but naming no day, like February 30:
        // no checkpoint can have it.
        if timestamp_of(s).is_none() {
            return Err(CheckpointError::NotFound { id: s.to_string() });
        }
        Ok(CheckpointId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// When the checkpoint was created (from the id itself, to the millisecond).
    pub fn created_at(&self) -> OffsetDateTime {
        timestamp_of(&self.0).expect("a parsed id has a valid timestamp")
    }
}

/// In the API description: the id's text form, `YYYYMMDDTHHMMSS.mmmZ-xxxxxxxx`.
impl utoipa::PartialSchema for CheckpointId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "A checkpoint id: its creation time (UTC, to the millisecond) and 8 random hex digits.",
            ))
            .pattern(Some(ID_PATTERN))
            .examples(["20260101T120000.000Z-0a1b2c3d"])
            .into()
    }
}

impl utoipa::ToSchema for CheckpointId {}

fn timestamp_of(s: &str) -> Option<OffsetDateTime> {
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let month = Month::try_from(n(4..6)? as u8).ok()?;
    let date = Date::from_calendar_date(n(0..4)? as i32, month, n(6..8)? as u8).ok()?;
    let time = Time::from_hms_milli(
        n(9..11)? as u8,
        n(11..13)? as u8,
        n(13..15)? as u8,
        n(16..19)? as u16,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for CheckpointId {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CheckpointId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CheckpointId::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_sort_by_time() {
        let a = CheckpointId::generate(time::macros::datetime!(2025-03-04 05:06:07.089 UTC));
        let b = CheckpointId::generate(time::macros::datetime!(2025-03-04 05:06:07.090 UTC));
        assert!(a.as_str().starts_with("20250304T050607.089Z-"), "{a}");
        assert_eq!(CheckpointId::parse(a.as_str()).unwrap(), a);
        assert!(a < b);
        assert_eq!(
            a.created_at(),
            time::macros::datetime!(2025-03-04 05:06:07.089 UTC)
        );
    }

    #[test]
    fn hostile_ids_are_rejected() {
        for s in [
            "",
            "latest",
            "../../etc/passwd",
            "20250304T050607.089Z-1a2b3c4",
            "20250304T050607.089Z-1a2b3c4G",
            "20250304T050607.089Z/1a2b3c4d",
            "20251304T050607.089Z-1a2b3c4d",
            "20250304T050607.089Z-1A2B3C4D",
            "2025030√T050607.089Z-1a2b3c4d",
            "20250304T050607.089Z-../../..",
            "20250304T250607.089Z-1a2b3c4d",
        ] {
            assert!(
                matches!(
                    CheckpointId::parse(s),
                    Err(CheckpointError::InvalidId { .. })
                ),
                "{s:?}"
            );
        }
        let feb30 = "20250230T050607.089Z-1a2b3c4d";
        assert!(matches!(
            CheckpointId::parse(feb30),
            Err(CheckpointError::NotFound { .. })
        ));
        let re = regex::Regex::new(ID_PATTERN).unwrap();
        assert!(re.is_match(feb30));
        let id = CheckpointId::generate(time::OffsetDateTime::now_utc());
        assert!(re.is_match(id.as_str()));
        assert!(!re.is_match("20251304T050607.089Z-1a2b3c4d"));
    }
}
