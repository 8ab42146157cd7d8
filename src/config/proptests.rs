//! Property tests of the parsers a request reaches in this module: durations, glob patterns over
//! names, and the whole config (JSON → typed → validated). Arbitrary input never panics; every
//! rejection says what was wrong, at the field's path where there is one; what is valid
//! round-trips.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::limits::{CHECKPOINT_INTERVAL, DurRange, LEASE_TTL, STOP_TIMEOUT};
use super::{Config, ConfigError, Dur, NAME_GLOB, is_name, name_glob, parse_with_env};

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// `pattern` without its `^…$` anchors, for proptest's regex strategies.
fn unanchored(pattern: &str) -> &str {
    pattern.trim_start_matches('^').trim_end_matches('$')
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9._-]{0,30}"
}

/// A duration inside `range`, to the nanosecond.
fn dur_in(DurRange(min, max): DurRange) -> impl Strategy<Value = Dur> {
    (min.as_nanos() as u64..=max.as_nanos() as u64).prop_map(|n| Dur(Duration::from_nanos(n)))
}

/// JSON of any shape, with keys that are often the config's own field names so that the
/// parser's deeper paths are reached.
fn any_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        prop::sample::select(vec![
            "stacks",
            "name",
            "command",
            "args",
            "env",
            "storage",
            "bucket",
            "checkpoint",
            "interval",
            "lease",
            "ttl",
            "readiness",
            "tcp",
            "period",
            "depends_on",
            "instances",
            "stop_timeout",
            "webhooks",
            "url",
            "hooks",
            "pre_start",
            "ports",
            "replication",
        ])
        .prop_map(str::to_string),
        ".{0,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "0s",
            "1s",
            "90s",
            "1000000years",
            "-1s",
            "web",
            "sleep 1"
        ])
        .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Every rejection of a config document is non-empty and every message says something.
fn check_rejection(text: &str, e: &ConfigError) {
    match e {
        ConfigError::Invalid(problems) => {
            assert!(!problems.is_empty(), "{text}: no problem listed");
            for p in problems {
                assert!(!p.message.trim().is_empty(), "{text}: {p:?}");
            }
        }
        other => assert!(!other.to_string().trim().is_empty(), "{text}"),
    }
}

/// A valid config: inline processes with distinct names and in-range durations.
fn valid_config() -> impl Strategy<Value = Value> {
    let process = (
        "[a-z][a-z0-9]{0,10}",
        "[a-z]{1,8}( [a-z0-9]{1,6}){0,2}",
        prop::option::of(1u32..=4),
        prop::option::of(dur_in(STOP_TIMEOUT)),
        prop::collection::btree_map("[A-Z][A-Z0-9_]{0,8}", "[ -~]{0,10}", 0..3),
    );
    (
        prop::collection::vec(process, 0..4),
        prop::option::of(dur_in(CHECKPOINT_INTERVAL)),
        // Longer than three times the default clock skew (2s), which it must be.
        dur_in(DurRange(Duration::from_secs(7), LEASE_TTL.1)),
    )
        .prop_map(|(procs, interval, ttl)| {
            let mut seen = std::collections::BTreeSet::new();
            let stacks: Vec<Value> = procs
                .into_iter()
                // Distinct names, none an instance name of another (`a` ×2 is `a-1`, `a-2`).
                .filter(|(n, ..)| seen.insert(n.clone()))
                .map(|(name, command, instances, stop_timeout, env)| {
                    let mut p = json!({"name": name, "command": command, "env": env});
                    if let Some(i) = instances {
                        p["instances"] = json!(i);
                    }
                    if let Some(d) = stop_timeout {
                        p["stop_timeout"] = json!(d.to_string());
                    }
                    p
                })
                .collect();
            let mut c = json!({"stacks": stacks, "lease": {"ttl": ttl.to_string()}});
            if let Some(i) = interval {
                c["checkpoint"] = json!({"interval": i.to_string()});
            }
            c
        })
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_with_env(text, |_| None)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_duration_text_parses_or_says_what_is_expected(s in ".{0,24}") {
        match s.parse::<Dur>() {
            Ok(d) => prop_assert_eq!(d.to_string().parse::<Dur>().unwrap(), d),
            Err(e) => {
                let quoted = format!("{s:?}");
                prop_assert!(e.contains(&quoted), "{}", e);
                prop_assert!(e.contains("expected a number with a unit"), "{}", e);
            }
        }
    }

    #[test]
    fn durations_round_trip_through_text_and_json(secs in 0u64..=10 * 366 * 86_400, nanos in 0u32..1_000_000_000) {
        let d = Dur(Duration::new(secs, nanos));
        prop_assert_eq!(d.to_string().parse::<Dur>().unwrap(), d);
        let json = serde_json::to_string(&d).unwrap();
        prop_assert_eq!(serde_json::from_str::<Dur>(&json).unwrap(), d);
    }

    #[test]
    fn any_glob_text_is_taken_or_refused_with_a_reason(s in ".{0,16}") {
        if let Err(e) = name_glob(&s) {
            prop_assert!(!e.trim().is_empty());
        }
    }

    #[test]
    fn every_glob_the_documented_pattern_allows_is_taken(s in unanchored(NAME_GLOB)) {
        let re = regex::Regex::new(NAME_GLOB).unwrap();
        prop_assert!(re.is_match(&s), "the generator left the pattern: {:?}", s);
        prop_assert!(name_glob(&s).is_ok(), "{:?}: {:?}", s, name_glob(&s).err());
    }

    #[test]
    fn a_name_is_a_glob_that_matches_itself(n in name(), suffix in "[a-z0-9-]{0,6}") {
        prop_assert!(is_name(&n));
        prop_assert!(name_glob(&n).unwrap().matches(&n));
        let wild = format!("{n}*");
        let longer = format!("{n}{suffix}");
        prop_assert!(name_glob(&wild).unwrap().matches(&longer));
    }

    #[test]
    fn any_text_as_a_config_never_panics(text in ".{0,64}") {
        if let Err(e) = parse(&text) {
            check_rejection(&text, &e);
        }
    }

    #[test]
    fn any_json_as_a_config_is_valid_or_says_why(v in any_json()) {
        let text = v.to_string();
        match parse(&text) {
            Ok(c) => {
                prop_assert!(super::validate(&c).is_empty());
                let again = serde_json::to_string(&c).unwrap();
                prop_assert_eq!(parse(&again).unwrap(), c);
            }
            Err(e) => check_rejection(&text, &e),
        }
    }

    #[test]
    fn valid_configs_round_trip(v in valid_config()) {
        let c = parse(&v.to_string()).map_err(|e| TestCaseError::fail(format!("{v}: {e}")))?;
        prop_assert_eq!(c.stacks.len(), v["stacks"].as_array().unwrap().len());
        let again = serde_json::to_string(&c).unwrap();
        prop_assert_eq!(parse(&again).unwrap(), c);
    }

    #[test]
    fn a_bad_field_is_reported_at_its_path(
        v in valid_config(),
        which in 0usize..4,
        junk in "[a-z ]{0,8}",
        unknown in "[a-z]{1,8}_x",
    ) {
        let mut v = v;
        let (path, bad) = match which {
            // Not a duration.
            0 => { v["lease"]["ttl"] = json!(format!("{junk}parsecs")); ("lease.ttl".to_string(), "invalid duration") }
            // A duration out of its range.
            1 => { v["checkpoint"] = json!({"interval": "0s"}); ("checkpoint.interval".into(), "out of range") }
            // The wrong type.
            2 => { v["lease"]["ttl"] = json!(7); ("lease.ttl".into(), "") }
            // A field that does not exist, in a process or at the top.
            _ => match v["stacks"].as_array_mut().and_then(|s| s.first_mut()) {
                Some(p) => { p[&unknown] = json!(1); (format!("stacks[0].{unknown}"), "unknown field") }
                None => { v[&unknown] = json!(1); (unknown.clone(), "unknown field") }
            },
        };
        let text = v.to_string();
        let Err(ConfigError::Invalid(problems)) = parse(&text) else {
            return Err(TestCaseError::fail(format!("accepted {text}")));
        };
        let p = problems.iter().find(|p| p.path == path);
        prop_assert!(p.is_some(), "no problem at {}: {:?}", path, problems);
        let p = p.unwrap();
        prop_assert!(!p.message.is_empty() && p.message.contains(bad), "{:?}", p);
    }
}
