//! What the connectors ask of ESM, one service per file, each an `impl EsmClient` block over
//! the transport: cases and events (the import), Active Lists (the stream connector).

use serde_json::Value;

use super::MAX_STRING_LEN;

pub mod active_lists;
mod cases;
mod entries;
pub(crate) mod events;

/// The size of the first string (value or key) longer than [`MAX_STRING_LEN`], if any. JSON
/// depth is bounded by the parser, so the recursion is too.
fn oversized_string(v: &Value) -> Option<usize> {
    match v {
        Value::String(s) => (s.len() > MAX_STRING_LEN).then_some(s.len()),
        Value::Array(items) => items.iter().find_map(oversized_string),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.len() > MAX_STRING_LEN {
                Some(k.len())
            } else {
                oversized_string(v)
            }
        }),
        _ => None,
    }
}
