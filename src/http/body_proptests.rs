//! Property tests of the one strict JSON body reader ([`super::extract::parse`]) with the bodies the API
//! takes, and of the `timeout` query value: arbitrary input never panics; a refusal is 400
//! (not JSON) or 422 (the wrong shape) with a detail that names what was wrong, the field
//! included when there is one; valid bodies round-trip.

use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::http::environment::{CheckpointBody, RestoreBody};
use crate::http::error::ApiError;
use crate::http::extract::parse;
use crate::http::lease::ReleaseBody;
use crate::http::processes::parse_timeout;
use crate::http::procset::ScaleBody;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// The detail of a refusal, which must be a 400 or a 422 that says something.
fn refusal(e: ApiError) -> Result<String, TestCaseError> {
    match e {
        ApiError::BadRequest(d) | ApiError::Unprocessable(d) if !d.trim().is_empty() => Ok(d),
        other => Err(TestCaseError::fail(format!(
            "not a 400/422 with a detail: {other:?}"
        ))),
    }
}

/// `body` through the reader as `T`: taken, or refused properly.
fn read<T: DeserializeOwned>(body: &[u8]) -> Result<Option<T>, TestCaseError> {
    match parse::<T>(body) {
        Ok(v) => {
            let first = body.iter().find(|b| !b.is_ascii_whitespace());
            prop_assert_eq!(first, Some(&b'{'), "took a body that is no object");
            Ok(Some(v))
        }
        Err(e) => refusal(e).map(|_| None),
    }
}

fn read_all(body: &[u8]) -> Result<(), TestCaseError> {
    read::<CheckpointBody>(body)?;
    read::<RestoreBody>(body)?;
    read::<ReleaseBody>(body)?;
    read::<ScaleBody>(body)?;
    read::<Value>(body)?;
    Ok(())
}

fn any_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        prop::sample::select(vec!["label", "checkpoint", "instances", "name"])
            .prop_map(String::from),
        "[a-z]{1,6}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_are_taken_or_refused_with_a_reason(body in prop::collection::vec(any::<u8>(), 0..64)) {
        read_all(&body)?;
    }

    #[test]
    fn any_json_is_taken_or_refused_with_a_reason(v in any_json()) {
        read_all(v.to_string().as_bytes())?;
    }

    #[test]
    fn an_unknown_field_is_named(key in "[a-z]{1,8}_x", v in any_json()) {
        let body = json!({ &key: v }).to_string();
        for e in [
            parse::<CheckpointBody>(body.as_bytes()).err(),
            parse::<ReleaseBody>(body.as_bytes()).err(),
        ] {
            let d = refusal(e.expect("an unknown field is refused"))?;
            let named = format!("unknown field `{key}`");
            prop_assert!(d.contains(&named), "{}", d);
        }
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named(v in any_json().prop_filter("not a string", |v| !v.is_string())) {
        let e = parse::<RestoreBody>(json!({"checkpoint": v}).to_string().as_bytes()).unwrap_err();
        let d = refusal(e)?;
        prop_assert!(d.starts_with("checkpoint: "), "{}", d);
    }

    #[test]
    fn valid_bodies_round_trip(
        label in prop::option::of(".{0,40}"),
        checkpoint in ".{0,40}",
        keep in any::<bool>(),
        n in any::<u32>(),
    ) {
        let b: CheckpointBody = parse(json!({"label": label}).to_string().as_bytes()).unwrap();
        prop_assert_eq!(b.label, label);
        let b: RestoreBody = parse(json!({"checkpoint": checkpoint}).to_string().as_bytes()).unwrap();
        prop_assert_eq!(b.checkpoint, checkpoint);
        let b: ReleaseBody = parse(json!({"checkpoint": keep}).to_string().as_bytes()).unwrap();
        prop_assert_eq!(b.checkpoint, keep);
        // A whole number, written as an integer or as JSON's 3.0.
        for text in [format!("{{\"instances\": {n}}}"), format!("{{\"instances\": {n}.0}}")] {
            let b: ScaleBody = parse(text.as_bytes()).unwrap();
            prop_assert_eq!(b.instances, n);
        }
    }

    #[test]
    fn a_fraction_of_instances_is_named(n in 0u32..10_000, frac in 1u32..1000) {
        let text = format!("{{\"instances\": {n}.{frac:03}}}");
        let d = refusal(parse::<ScaleBody>(text.as_bytes()).unwrap_err())?;
        prop_assert!(d.starts_with("instances: ") && d.contains("not a whole number"), "{}", d);
    }

    #[test]
    fn any_timeout_text_is_a_duration_or_a_400(s in ".{0,12}") {
        match parse_timeout(&s) {
            Ok(d) => prop_assert!(d.as_secs() <= 999_999 * 3600, "{:?}", d),
            Err(e) => {
                let d = refusal(e)?;
                prop_assert!(d.starts_with("timeout: "), "{}", d);
            }
        }
    }

    #[test]
    fn timeouts_as_written_are_taken(n in 0u64..=999_999, unit in prop::sample::select(vec!["ms", "s", "m", "h"])) {
        let d = parse_timeout(&format!("{n}{unit}")).unwrap();
        let ms = match unit { "ms" => n, "s" => n * 1000, "m" => n * 60_000, _ => n * 3_600_000 };
        prop_assert_eq!(d.as_millis(), u128::from(ms));
    }
}
