//! How long each step of an operation took, for reports and benchmarks: serialised as
//! `{"<step>_ms": n, ..., "total_ms": n}` in the order the steps happened.

use std::time::Instant;

use serde::ser::{Serialize, SerializeMap, Serializer};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timings {
    steps: Vec<(&'static str, u64)>,
    total_ms: u64,
    started: Option<Instant>,
    last: Option<Instant>,
}

impl Timings {
    pub fn start() -> Timings {
        let now = Instant::now();
        Timings {
            started: Some(now),
            last: Some(now),
            ..Timings::default()
        }
    }

    /// Close step `name`: the time since the previous step ended.
    pub fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        let since = self.last.unwrap_or(now);
        self.steps
            .push((name, now.duration_since(since).as_millis() as u64));
        self.last = Some(now);
        self.total_ms = self
            .started
            .map_or(0, |s| now.duration_since(s).as_millis() as u64);
    }

    /// Milliseconds of step `name`, if it happened.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.steps
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, ms)| *ms)
    }
}

impl Serialize for Timings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.steps.len() + 1))?;
        for (k, v) in &self.steps {
            m.serialize_entry(&format!("{k}_ms"), v)?;
        }
        m.serialize_entry("total_ms", &self.total_ms)?;
        m.end()
    }
}

/// In the API description: an object of `<step>_ms` integers ending with `total_ms`.
impl utoipa::PartialSchema for Timings {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let ms = || {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
        };
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "Milliseconds of each step, as `<step>_ms`, in the order the steps happened.",
            ))
            .property("total_ms", ms())
            .required("total_ms")
            .additional_properties(Some(ms()))
            .into()
    }
}

impl utoipa::ToSchema for Timings {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_serialise_in_order_with_the_total() {
        let mut t = Timings::start();
        t.lap("stop");
        t.lap("checkpoint");
        let v = serde_json::to_string(&t).unwrap();
        assert!(
            v.starts_with("{\"stop_ms\":") && v.contains("\"checkpoint_ms\":") && v.ends_with('}'),
            "{v}"
        );
        assert!(t.get("stop").is_some() && t.get("nope").is_none());
    }
}
