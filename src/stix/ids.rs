//! Deterministic STIX ids, computed exactly as pycti computes them.
//!
//! The ids are the contract with data already in the platform: an id that differs from pycti's by
//! one bit makes OpenCTI create a duplicate instead of updating the object the Python connector
//! created. Every function here is checked against `../shared/golden/pycti-ids.jsonl`.

use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::pystr::normalise_name;

/// pycti's (and the STIX 2.1 SCO) namespace for UUIDv5 ids.
pub const NAMESPACE: Uuid = Uuid::from_u128(0x00abedb4_aa42_466c_9c01_fed23315a9b7);

/// `<prefix>--<uuidv5(NAMESPACE, JCS(data))>`.
pub fn deterministic_id(prefix: &str, data: &Value) -> String {
    // JCS (RFC 8785) cannot fail on a `Value` built from strings and nulls; an error here would
    // be a bug in the canonicaliser, so fall back to serde's (sorted, compact) rendering rather
    // than panicking in a long-running daemon.
    let canonical = serde_json_canonicalizer::to_string(data)
        .unwrap_or_else(|_| serde_json::to_string(data).unwrap_or_default());
    let uuid = Uuid::new_v5(&NAMESPACE, canonical.as_bytes());
    let mut id = String::with_capacity(prefix.len() + 38);
    id.push_str(prefix);
    id.push_str("--");
    id.push_str(uuid.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
    id
}

fn name_created(name: &str, created: Option<&str>) -> Value {
    json!({ "name": normalise_name(name), "created": created })
}

/// pycti `Incident.generate_id(name, created)`.
pub fn incident_id(name: &str, created: Option<&str>) -> String {
    deterministic_id("incident", &name_created(name, created))
}

/// pycti `CaseIncident.generate_id(name, created)`.
pub fn case_incident_id(name: &str, created: Option<&str>) -> String {
    deterministic_id("case-incident", &name_created(name, created))
}

/// pycti `Identity.generate_id(name, identity_class)`.
pub fn identity_id(name: &str, identity_class: &str) -> String {
    deterministic_id(
        "identity",
        &json!({ "name": normalise_name(name), "identity_class": identity_class.to_lowercase() }),
    )
}

/// pycti `MarkingDefinition.generate_id(definition_type, definition)`; TLP markings have fixed
/// ids that do not derive from their content.
pub fn marking_definition_id(definition_type: &str, definition: &str) -> String {
    if definition_type.eq_ignore_ascii_case("tlp")
        && let Some(tlp) = super::Tlp::from_marking_name(definition)
    {
        return tlp.marking_id().to_owned();
    }
    deterministic_id(
        "marking-definition",
        &json!({ "definition_type": definition_type, "definition": definition }),
    )
}

/// STIX 2.1 SCO id over `{"value": value}` (ipv4-addr, ipv6-addr, domain-name, and OpenCTI's
/// custom `hostname`, which pycti derives the same way).
pub fn value_observable_id(kind: &str, value: &str) -> String {
    deterministic_id(kind, &json!({ "value": value }))
}

/// STIX 2.1 `user-account` id over its id-contributing properties that are present.
pub fn user_account_id(
    account_login: Option<&str>,
    user_id: Option<&str>,
    account_type: Option<&str>,
) -> String {
    let mut map = Map::new();
    if let Some(v) = account_type {
        map.insert("account_type".into(), v.into());
    }
    if let Some(v) = user_id {
        map.insert("user_id".into(), v.into());
    }
    if let Some(v) = account_login {
        map.insert("account_login".into(), v.into());
    }
    deterministic_id("user-account", &Value::Object(map))
}

/// pycti `StixCoreRelationship.generate_id(type, source, target, start_time, stop_time)`.
pub fn relationship_id(
    relationship_type: &str,
    source_ref: &str,
    target_ref: &str,
    start_time: Option<&str>,
    stop_time: Option<&str>,
) -> String {
    let mut map = Map::new();
    map.insert("relationship_type".into(), relationship_type.into());
    map.insert("source_ref".into(), source_ref.into());
    map.insert("target_ref".into(), target_ref.into());
    if let Some(start) = start_time {
        map.insert("start_time".into(), start.into());
        if let Some(stop) = stop_time {
            map.insert("stop_time".into(), stop.into());
        }
    }
    deterministic_id("relationship", &Value::Object(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_has_prefix_and_v5_uuid() {
        let id = incident_id("x", None);
        let uuid = id.strip_prefix("incident--").expect("prefix");
        let parsed = Uuid::parse_str(uuid).expect("uuid");
        assert_eq!(parsed.get_version_num(), 5);
    }
}
