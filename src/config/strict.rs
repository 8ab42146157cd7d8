//! One strict way to turn JSON into a typed value, for the config file and every request body:
//! an object where an object is meant, at every depth.
//!
//! serde's derived structs also accept their positional form, an array (`[null, ["web"]]` is a
//! `Config` whose second field is `stacks`), and serde_json passes that through. [`Strict`] is a
//! deserializer over a [`Value`] that refuses a sequence wherever a struct is asked for, and
//! wraps every nested value the same way, so no struct anywhere in the tree can be given as an
//! array. Everything else (numbers, strings, enums, options) is exactly serde_json's.

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{
    DeserializeOwned, Deserializer, Error as _, IntoDeserializer, Unexpected, Visitor,
};
use serde::forward_to_deserialize_any;
use serde_json::{Error, Value};

/// `value` as `T`, refusing an array wherever `T` (or anything inside it) is a struct.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, Error> {
    T::deserialize(Strict(value))
}

/// A JSON value that deserializes structs only from objects.
pub struct Strict(pub Value);

impl<'de> IntoDeserializer<'de, Error> for Strict {
    type Deserializer = Strict;
    fn into_deserializer(self) -> Strict {
        self
    }
}

fn unexpected(v: &Value) -> Unexpected<'_> {
    match v {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(_) => Unexpected::Other("number"),
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

impl<'de> Deserializer<'de> for Strict {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(items) => {
                let mut seq = SeqDeserializer::new(items.into_iter().map(Strict));
                let v = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(v)
            }
            Value::Object(map) => {
                let mut m = MapDeserializer::new(map.into_iter().map(|(k, v)| (k, Strict(v))));
                let v = visitor.visit_map(&mut m)?;
                m.end()?;
                Ok(v)
            }
            leaf => leaf.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(_) => self.deserialize_any(visitor),
            other => Err(Error::invalid_type(
                unexpected(&other),
                &format!("an object ({name} is written as {{...}})").as_str(),
            )),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(Strict(other)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        // Unit variants are strings; no enum of ours carries a struct in the external form.
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::from_value;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        n: u32,
        s: Option<String>,
    }
    impl Default for Inner {
        fn default() -> Self {
            Inner { n: 7, s: None }
        }
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Outer {
        inner: Inner,
        list: Vec<Inner>,
        name: Option<String>,
    }

    #[test]
    fn objects_parse_as_serde_json_would() {
        let v = json!({"inner": {"n": 2}, "list": [{"s": "x"}], "name": null});
        let o: Outer = from_value(v.clone()).unwrap();
        assert_eq!(o, serde_json::from_value::<Outer>(v).unwrap());
        assert_eq!(o.list[0].s.as_deref(), Some("x"));
    }

    #[test]
    fn an_array_is_no_struct_at_any_depth() {
        for v in [
            json!([]),
            json!([{"n": 1}, [], "x"]),
            json!({"inner": [3]}),
            json!({"list": [[3]]}),
        ] {
            // serde_json itself takes every one of these.
            assert!(serde_json::from_value::<Outer>(v.clone()).is_ok(), "{v}");
            let e = from_value::<Outer>(v.clone()).unwrap_err().to_string();
            assert!(e.contains("an object"), "{v}: {e}");
        }
        assert!(from_value::<Outer>(json!({"inner": {"n": -1}})).is_err());
        assert!(from_value::<Outer>(json!({"other": 1})).is_err());
    }
}
