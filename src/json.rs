//! Reading JSON into a `serde_json::Value` that keeps every ambiguity visible.
//!
//! `serde_json::Value` silently keeps the last of two equal keys, so a policy with two
//! `"whmcs_update_ticket"` rules would quietly lose one, and a gateway would evaluate one
//! reading of a message while a server acted on another. This reader rejects duplicate
//! keys instead, with the line and column `serde_json` reports. For messages on their way
//! to a server it also rejects keys that are equal when case is ignored (`"name"` and
//! `"NAME"`): Go's `encoding/json` matches field names that way, last one winning.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::collections::HashSet;
use std::fmt;

/// Which keys of one object count as the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keys {
    /// Byte-equal keys: the rule of the policy file.
    Exact,
    /// Keys equal under Unicode case folding, as some JSON decoders match field names.
    IgnoreCase,
}

/// Parses `text` as one JSON value, rejecting duplicate object keys.
/// The value at `path` (object members, outermost first) in `value`: what
/// `Value::pointer` finds, without parsing and unescaping a pointer string on every call
/// (which allocates, on the gateway's per-message path).
pub(crate) fn at<'v>(value: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(value, |value, key| value.get(*key))
}

/// `value` as compact JSON text: what `to_string()` makes, written straight into the
/// buffer instead of through `fmt::Formatter` (several times slower per write).
pub(crate) fn text(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

pub(crate) fn parse_strict(text: &str) -> Result<Value, serde_json::Error> {
    parse_with(text.as_bytes(), Keys::Exact)
}

/// Parses `bytes` as one JSON value under `keys`. A rejected key is a
/// [`serde_json::error::Category::Data`] error; malformed JSON is `Syntax` or `Eof`.
pub(crate) fn parse_with(bytes: &[u8], keys: Keys) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = Strict(keys).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Reads one value from any serde `deserializer`, rejecting duplicate object keys.
pub(crate) fn deserialize_strict<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Value, D::Error> {
    Strict(Keys::Exact).deserialize(deserializer)
}

/// A key folded so that keys equal when case is ignored fold equal: each character
/// upper-cased then lower-cased, which also joins `K`, `k` and the Kelvin sign, and `s`
/// with the long s, as Go's simple folding does.
pub(crate) fn fold_case(key: &str) -> String {
    if key.is_ascii() {
        return key.to_ascii_lowercase();
    }
    key.chars()
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .collect()
}

#[derive(Clone, Copy)]
struct Strict(Keys);

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        // Folded keys seen so far: scanned while few (most objects have a handful of keys,
        // and hashing each costs more than comparing it), hashed once many.
        let mut folded = Folded::Few(Vec::new());
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key {}: each key may appear once in an object",
                    short(&key)
                )));
            }
            if self.0 == Keys::IgnoreCase {
                let fold = fold_case(&key);
                if folded.contains(&fold) {
                    let other = map
                        .keys()
                        .find(|k| fold_case(k) == fold)
                        .map(String::as_str)
                        .unwrap_or_default();
                    return Err(de::Error::custom(format_args!(
                        "keys {} and {} differ only in case; a server may read them as one \
                         field, so each key may appear once, ignoring case",
                        short(other),
                        short(&key)
                    )));
                }
                folded.insert(fold);
            }
            let value = access.next_value_seed(self)?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

/// The folded keys of one object.
enum Folded {
    Few(Vec<String>),
    Many(HashSet<String>),
}

/// How many keys are scanned before they are hashed.
const FEW_KEYS: usize = 16;

impl Folded {
    fn contains(&self, key: &str) -> bool {
        match self {
            Folded::Few(keys) => keys.iter().any(|k| k == key),
            Folded::Many(keys) => keys.contains(key),
        }
    }

    fn insert(&mut self, key: String) {
        match self {
            Folded::Few(keys) if keys.len() < FEW_KEYS => keys.push(key),
            Folded::Few(keys) => {
                let mut many: HashSet<String> = keys.drain(..).collect();
                many.insert(key);
                *self = Folded::Many(many);
            }
            Folded::Many(keys) => {
                keys.insert(key);
            }
        }
    }
}

/// A key for an error message: JSON-quoted, cut to a bounded length.
fn short(key: &str) -> String {
    const LIMIT: usize = 40;
    match key.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!(
            "{}…",
            serde_json::to_string(key.get(..cut).unwrap_or_default()).unwrap_or_default()
        ),
        None => serde_json::to_string(key).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::error::Category;

    #[test]
    fn exact_mode_rejects_only_byte_equal_keys() {
        assert!(parse_strict(r#"{"a": 1, "A": 2}"#).is_ok());
        let err = parse_strict(r#"{"a": {"b": 1, "b": 2}}"#).unwrap_err();
        assert_eq!(err.classify(), Category::Data);
        assert!(err.to_string().contains("duplicate key \"b\""), "{err}");
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn ignore_case_mode_rejects_keys_equal_when_case_is_ignored_anywhere() {
        for text in [
            r#"{"name": "a", "NAME": "b"}"#,
            r#"{"params": {"arguments": {"amount": 1, "Amount": 2}}}"#,
            r#"[{"x": [{"Method": 1, "method": 2}]}]"#,
            "{\"k\": 1, \"\u{212A}\": 2}",
            "{\"s\": 1, \"\u{17F}\": 2}",
        ] {
            let err = parse_with(text.as_bytes(), Keys::IgnoreCase).unwrap_err();
            assert_eq!(err.classify(), Category::Data, "{text}");
            assert!(err.to_string().contains("differ only in case"), "{err}");
        }
        assert!(parse_with(br#"{"name": "a", "names": "b"}"#, Keys::IgnoreCase).is_ok());
    }

    #[test]
    fn syntax_errors_and_trailing_data_are_syntax() {
        for text in ["{", "{} {}", "[1,]", "\"\\ud800\""] {
            let err = parse_with(text.as_bytes(), Keys::IgnoreCase).unwrap_err();
            assert_ne!(err.classify(), Category::Data, "{text}: {err}");
        }
        let err = parse_with(b"\"\xff\"", Keys::IgnoreCase).unwrap_err();
        assert_ne!(err.classify(), Category::Data);
    }

    #[test]
    fn long_keys_are_cut_in_messages() {
        let key = "k".repeat(10_000);
        let text = format!("{{\"{key}\": 1, \"{key}\": 2}}");
        assert!(parse_strict(&text).unwrap_err().to_string().len() < 200);
    }
}
