//! Object names under `db/` and how a listing reads back into generations.
//!
//! ```text
//! db/<generation>/snapshot-<unix_ms>-e<epoch>.db.zst
//! db/<generation>/wal/<index:08x>-<offset:016x>-<unix_ms>-e<epoch>.zst
//! ```
//! `<generation>` is `<unix_ms:013>-<random:08x>` (the time it started). Fixed-width fields make
//! lexicographic order the order of time (generations) and of replay (segments: WAL cycle index,
//! then byte offset in that cycle), and every name says its time, so a sync never needs to LIST:
//! only start-up, restore and pruning do.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use crate::objstore::ObjectMeta;

pub const ROOT: &str = "db/";

/// A new generation name for `now`.
pub fn generation_name(now: OffsetDateTime) -> String {
    format!("{:013}-{:08x}", unix_ms(now), rand::random::<u32>())
}

pub fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn snapshot_key(generation: &str, unix_ms: i64, epoch: u64) -> String {
    format!("{ROOT}{generation}/snapshot-{unix_ms:013}-e{epoch}.db.zst")
}

pub fn segment_key(generation: &str, index: u64, offset: u64, unix_ms: i64, epoch: u64) -> String {
    format!("{ROOT}{generation}/wal/{index:08x}-{offset:016x}-{unix_ms:013}-e{epoch}.zst")
}

/// A stored snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRef {
    pub key: String,
    pub unix_ms: i64,
    pub epoch: u64,
    pub size: u64,
}

/// A stored WAL segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentRef {
    pub key: String,
    pub index: u64,
    pub offset: u64,
    pub unix_ms: i64,
    pub epoch: u64,
    pub size: u64,
}

/// Everything stored for one generation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Generation {
    pub name: String,
    pub start_ms: i64,
    pub snapshot: Option<SnapshotRef>,
    /// In replay order.
    pub segments: Vec<SegmentRef>,
    /// Every key of the generation, including ones this version does not understand.
    pub keys: Vec<String>,
}

/// Group a listing of `db/` into generations, oldest first. Objects that are not inside a
/// well-named generation are ignored.
pub fn generations(listing: &[ObjectMeta]) -> Vec<Generation> {
    let mut by_name: BTreeMap<String, Generation> = BTreeMap::new();
    for meta in listing {
        let Some(rest) = meta.key.strip_prefix(ROOT) else {
            continue;
        };
        let Some((name, file)) = rest.split_once('/') else {
            continue;
        };
        let Some(start_ms) = parse_generation(name) else {
            continue;
        };
        let g = by_name
            .entry(name.to_string())
            .or_insert_with(|| Generation {
                name: name.to_string(),
                start_ms,
                ..Generation::default()
            });
        g.keys.push(meta.key.clone());
        if let Some(s) = parse_snapshot(file, meta) {
            // Two snapshots can only come from a retried upload; the newest epoch wins.
            if g.snapshot.as_ref().is_none_or(|old| old.epoch <= s.epoch) {
                g.snapshot = Some(s);
            }
        } else if let Some(s) = parse_segment(file, meta) {
            g.segments.push(s);
        }
    }
    let mut out: Vec<Generation> = by_name.into_values().collect();
    for g in &mut out {
        g.segments.sort_by_key(|s| (s.index, s.offset));
    }
    out
}

/// The start time (unix ms) of a generation name, or `None` if it is not one.
pub fn parse_generation(name: &str) -> Option<i64> {
    let (ms, rand) = name.split_once('-')?;
    let ok = ms.len() == 13
        && ms.bytes().all(|b| b.is_ascii_digit())
        && rand.len() == 8
        && rand.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| ms.parse().ok()).flatten()
}

fn parse_snapshot(file: &str, meta: &ObjectMeta) -> Option<SnapshotRef> {
    let body = file.strip_prefix("snapshot-")?.strip_suffix(".db.zst")?;
    let (ms, epoch) = body.split_once("-e")?;
    Some(SnapshotRef {
        key: meta.key.clone(),
        unix_ms: ms.parse().ok()?,
        epoch: epoch.parse().ok()?,
        size: meta.size,
    })
}

fn parse_segment(file: &str, meta: &ObjectMeta) -> Option<SegmentRef> {
    let body = file.strip_prefix("wal/")?.strip_suffix(".zst")?;
    let mut parts = body.splitn(4, '-');
    let index = u64::from_str_radix(parts.next()?, 16).ok()?;
    let offset = u64::from_str_radix(parts.next()?, 16).ok()?;
    let unix_ms = parts.next()?.parse().ok()?;
    let epoch = parts.next()?.strip_prefix('e')?.parse().ok()?;
    Some(SegmentRef {
        key: meta.key.clone(),
        index,
        offset,
        unix_ms,
        epoch,
        size: meta.size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objstore::{ETag, validate_key};

    fn meta(key: &str) -> ObjectMeta {
        ObjectMeta {
            key: key.to_string(),
            size: 1,
            etag: ETag("x".into()),
            modified_unix: 0,
        }
    }

    #[test]
    fn names_sort_in_replay_order_and_parse_back() {
        let g1 = "1732000000000-0000abcd";
        let g2 = "1732000000001-00000001";
        let keys = [
            segment_key(g1, 1, 32, 1_732_000_000_900, 7),
            segment_key(g1, 0, 4152, 1_732_000_000_500, 7),
            snapshot_key(g1, 1_732_000_000_000, 7),
            segment_key(g1, 0, 32, 1_732_000_000_400, 7),
            snapshot_key(g2, 1_732_000_000_001, 8),
            "db/not-a-generation/x".to_string(),
        ];
        for k in &keys[..5] {
            validate_key(k).unwrap();
        }
        let mut sorted = keys[..4].to_vec();
        sorted.sort();
        assert!(sorted[0].contains("snapshot"));
        assert_eq!(sorted[1], keys[3]);
        assert_eq!(sorted[3], keys[0]);

        let listing: Vec<ObjectMeta> = keys.iter().map(|k| meta(k)).collect();
        let gens = generations(&listing);
        assert_eq!(gens.len(), 2);
        assert_eq!(gens[0].name, g1);
        assert_eq!(gens[0].start_ms, 1_732_000_000_000);
        assert_eq!(gens[0].snapshot.as_ref().unwrap().epoch, 7);
        let order: Vec<(u64, u64)> = gens[0]
            .segments
            .iter()
            .map(|s| (s.index, s.offset))
            .collect();
        assert_eq!(order, [(0, 32), (0, 4152), (1, 32)]);
        assert_eq!(gens[0].segments[2].unix_ms, 1_732_000_000_900);
        assert_eq!(gens[1].segments.len(), 0);
    }

    #[test]
    fn generation_names_are_recognised() {
        let name = generation_name(OffsetDateTime::now_utc());
        assert!(parse_generation(&name).is_some(), "{name}");
        assert!(parse_generation("123-abc").is_none());
    }
}
