//! Property tests of what reaches this module from outside: checkpoint ids (URLs, bodies,
//! object keys) and manifests (objects in storage). Arbitrary input never panics; an id is taken
//! exactly when it has the documented shape and names a real time; every refusal says why; a
//! valid manifest round-trips and a bad path in one is refused by name.

use proptest::prelude::*;
use time::{Date, Month, PrimitiveDateTime, Time};

use super::error::CheckpointError;
use super::id::{CheckpointId, ID_PATTERN};
use super::manifest::{
    ChunkHash, ChunkRef, Entry, EntryKind, FORMAT_VERSION, MAX_OBJECT, Manifest, Meta, Stats,
};

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

fn time_of_day() -> impl Strategy<Value = time::OffsetDateTime> {
    (
        1970i32..=9999,
        1u8..=12,
        1u8..=31,
        0u8..24,
        0u8..60,
        0u8..60,
        0u16..1000,
    )
        .prop_filter_map("a calendar day", |(y, mo, d, h, mi, s, ms)| {
            let date = Date::from_calendar_date(y, Month::try_from(mo).ok()?, d).ok()?;
            let t = Time::from_hms_milli(h, mi, s, ms).ok()?;
            Some(PrimitiveDateTime::new(date, t).assume_utc())
        })
}

fn meta() -> impl Strategy<Value = Meta> {
    (0u32..=0o7777, any::<i64>(), any::<u32>(), any::<u32>()).prop_map(
        |(mode, mtime_ns, uid, gid)| Meta {
            mode,
            mtime_ns,
            uid,
            gid,
        },
    )
}

/// A file's chunks and its size: slices within an object, adding up to the size.
fn file_kind() -> impl Strategy<Value = EntryKind> {
    let slice = (any::<[u8; 32]>(), 0..MAX_OBJECT as u64).prop_flat_map(|(h, offset)| {
        (1..=MAX_OBJECT as u64 - offset).prop_map(move |len| ChunkRef {
            hash: ChunkHash(h),
            offset,
            len,
        })
    });
    (
        prop::collection::vec(slice, 0..4),
        prop::option::of(any::<[u8; 32]>()),
    )
        .prop_map(|(chunks, content)| EntryKind::File {
            size: chunks.iter().map(|c| c.len).sum(),
            chunks,
            content: content.map(ChunkHash),
        })
}

fn kind() -> impl Strategy<Value = EntryKind> {
    prop_oneof![
        Just(EntryKind::Dir),
        file_kind(),
        "[^\0]{1,40}".prop_map(|target| EntryKind::Symlink { target }),
    ]
}

/// A valid manifest: every entry's parent is the root or a directory listed before it.
fn manifest() -> impl Strategy<Value = Manifest> {
    let entry = (any::<prop::sample::Index>(), "[^/\0]{1,12}", meta(), kind());
    (
        time_of_day(),
        prop::collection::vec(entry, 0..12),
        meta(),
        prop::option::of("[ -~]{0,20}"),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(at, raw, root, label, epoch)| {
            let mut entries: Vec<Entry> = Vec::new();
            for (parent, name, meta, kind) in raw {
                if name == "." || name == ".." {
                    continue;
                }
                let dirs: Vec<&str> = entries
                    .iter()
                    .filter(|e| e.kind == EntryKind::Dir)
                    .map(|e| e.path.as_str())
                    .collect();
                // Index 0 of dirs+1 is the root.
                let path = match parent.index(dirs.len() + 1) {
                    0 => name,
                    i => format!("{}/{name}", dirs[i - 1]),
                };
                if entries.iter().all(|e| e.path != path) {
                    entries.push(Entry { path, meta, kind });
                }
            }
            let id = CheckpointId::generate(at);
            Manifest {
                format: FORMAT_VERSION,
                created_at: id.created_at(),
                id,
                label,
                epoch,
                stats: Stats::default(),
                root,
                entries,
            }
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_is_an_id_only_if_it_has_the_documented_shape(s in ".{0,40}") {
        let shaped = regex::Regex::new(ID_PATTERN).unwrap().is_match(&s);
        match CheckpointId::parse(&s) {
            Ok(id) => {
                prop_assert!(shaped, "{:?}", s);
                prop_assert_eq!(id.as_str(), s.as_str());
            }
            Err(CheckpointError::InvalidId { reason, .. }) => {
                prop_assert!(!shaped, "{:?} has the shape: {}", s, reason);
                prop_assert!(!reason.is_empty());
            }
            // The right shape, but no such day (February 30).
            Err(CheckpointError::NotFound { .. }) => prop_assert!(shaped, "{:?}", s),
            Err(other) => return Err(TestCaseError::fail(format!("{s:?}: {other}"))),
        }
    }

    #[test]
    fn every_text_of_the_documented_shape_is_an_id_or_no_day(
        s in ID_PATTERN.trim_start_matches('^').trim_end_matches('$'),
    ) {
        match CheckpointId::parse(&s) {
            Ok(_) | Err(CheckpointError::NotFound { .. }) => {}
            Err(e) => return Err(TestCaseError::fail(format!("{s:?}: {e}"))),
        }
    }

    #[test]
    fn generated_ids_round_trip(at in time_of_day()) {
        let id = CheckpointId::generate(at);
        prop_assert_eq!(CheckpointId::parse(id.as_str()).unwrap(), id.clone());
        prop_assert_eq!(id.created_at(), at);
        let json = serde_json::to_string(&id).unwrap();
        prop_assert_eq!(serde_json::from_str::<CheckpointId>(&json).unwrap(), id);
    }

    #[test]
    fn any_bytes_as_a_manifest_are_refused_with_a_reason(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let id = CheckpointId::generate(time::OffsetDateTime::UNIX_EPOCH);
        if let Err(e) = Manifest::from_slice(&id, &body) {
            prop_assert!(!e.trim().is_empty());
        }
    }

    #[test]
    fn valid_manifests_round_trip(m in manifest()) {
        prop_assert_eq!(m.validate(), Ok(()));
        let body = serde_json::to_vec(&m).unwrap();
        prop_assert_eq!(Manifest::from_slice(&m.id, &body).unwrap(), m);
    }

    #[test]
    fn a_bad_path_is_refused_by_name(
        m in manifest().prop_filter("an entry", |m| !m.entries.is_empty()),
        at in any::<prop::sample::Index>(),
        how in 0usize..5,
    ) {
        let mut m = m;
        let i = at.index(m.entries.len());
        let path = &mut m.entries[i].path;
        *path = match how {
            0 => format!("/{path}"),
            1 => format!("{path}/../x"),
            2 => format!("{path}//x"),
            3 => format!("{path}\0"),
            _ => format!("./{path}"),
        };
        let bad = format!("{:?}", m.entries[i].path);
        let e = m.validate().unwrap_err();
        prop_assert!(e.contains(&bad), "{} does not name {}", e, bad);
        // As stored: the same refusal through the parser.
        let body = serde_json::to_vec(&m).unwrap();
        prop_assert_eq!(Manifest::from_slice(&m.id, &body).unwrap_err(), e);
    }

    #[test]
    fn a_manifest_of_another_id_is_refused(m in manifest(), at in time_of_day()) {
        let other = CheckpointId::generate(at);
        prop_assume!(other != m.id);
        let body = serde_json::to_vec(&m).unwrap();
        let e = Manifest::from_slice(&other, &body).unwrap_err();
        prop_assert!(e.contains(m.id.as_str()), "{}", e);
    }
}
