//! The wire: every request and response body of the API as a type, shared by the handlers
//! (which deserialize requests into these and serialize answers from them), the OpenAPI
//! document (their `ToSchema`/`IntoParams` derives) and the CLI client (which reads answers
//! into them). Depends only on serde, utoipa and the domain's value types, never on the HTTP
//! layer or the store.
//!
//! Two rules keep the wire byte-for-byte what DMS clients saw when these bodies were built as
//! `serde_json::Value`:
//! - A response struct declares its fields in alphabetical order: a JSON object built as a
//!   `Value` serialises its keys sorted, and a struct in declaration order
//!   (each module's `…_serialise_with_sorted_keys` test holds its responses to it).
//! - A request is read as JSON first (a syntax error is `DMS.00400800` wherever it is) and then
//!   into its type; a value of the wrong type is the bad parameter DMS names (`DMS.00400062`),
//!   found by the path of the error ([`decode`]). Fields a handler requires are `Option`s that
//!   the domain checks, so that a missing one is named as DMS names it, not as serde would.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_json::Value;

use kafka_tasks_domain::Invalid;

pub mod cluster;
pub mod control;
pub mod credential;
pub mod derived;
pub mod error;
pub mod events;
pub mod executor;
pub mod instance;
pub mod operation;
pub mod retention;
pub mod signature;
pub mod task;
pub mod token;
pub mod zone;

/// A request body: the field names a type error may be reported under.
pub trait RequestBody: DeserializeOwned {
    /// Every field name (at any depth) DMS names when its value is bad: a type error is
    /// reported under the innermost of these on the error's path, else as a bad body.
    const FIELDS: &'static [&'static str];

    /// How a bad value of `field` (one of [`Self::FIELDS`]) is refused.
    fn refusal(field: &'static str) -> Invalid {
        Invalid::Param(field)
    }
}

/// Reads a request body: a JSON object (`Invalid::Body` otherwise, as for malformed JSON),
/// then its type, a value of the wrong type being `Invalid::Param` of the field DMS names.
pub fn decode<T: RequestBody>(bytes: &[u8]) -> Result<T, Invalid> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v @ Value::Object(_)) => from_value(v),
        _ => Err(Invalid::Body),
    }
}

/// As [`decode`], from a JSON value already parsed.
pub fn from_value<T: RequestBody>(v: Value) -> Result<T, Invalid> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let named = e.path().iter().rev().find_map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => T::FIELDS.iter().find(|f| **f == key.as_str()).copied(),
            _ => None,
        });
        named.map_or(Invalid::Body, T::refusal)
    })
}

/// A query, as the HTTP layer's `QueryMap` holds it (name → value, each given once), read into
/// its type; every value is a string, so only a type that expects another fails.
pub fn from_query<T: RequestBody>(query: &HashMap<String, String>) -> Result<T, Invalid> {
    let object = query.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    from_value(Value::Object(object))
}

#[cfg(test)]
mod domain_rules;

#[cfg(test)]
mod tests {
    use serde::Serialize;

    /// Whether `v` serialises with its keys sorted at every level, as a `serde_json::Value`
    /// does: the bytes the handlers sent when they built their answers as values.
    pub(crate) fn sorted<T: Serialize>(v: &T) -> bool {
        let direct = serde_json::to_string(v).unwrap_or_default();
        let through_value = serde_json::to_value(v).map(|v| v.to_string()).unwrap_or_default();
        !direct.is_empty() && direct == through_value
    }

    #[test]
    fn the_check_of_sorted_keys_can_fail() {
        #[derive(Serialize)]
        struct Unsorted {
            b: u8,
            a: u8,
        }
        assert!(!sorted(&Unsorted { b: 1, a: 2 }));
    }
}
