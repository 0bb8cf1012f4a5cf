//! Deterministic STIX ids, computed exactly as pycti computes them.
//!
//! The ids are the contract with data already in the platform: an id that differs from pycti's by
//! one bit makes OpenCTI create a duplicate instead of updating the object the Python connector
//! created. Every function here is checked against `tests/data/golden/pycti-ids.jsonl`.

use serde_json::{Value, json};
use uuid::Uuid;

use pystr::normalise_name;

/// pycti's (and the STIX 2.1 SCO) namespace for UUIDv5 ids.
pub(crate) const NAMESPACE: Uuid = Uuid::from_u128(0x00abedb4_aa42_466c_9c01_fed23315a9b7);

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

/// `<prefix>--<uuidv5(NAMESPACE, JCS(object))>` for a flat object of strings and nulls, without
/// building a `Value`: the hot path (every incident, observable and relationship needs one).
///
/// JCS sorts keys by UTF-16 code units (byte order for our ASCII keys) and escapes strings
/// exactly as serde_json does (`"`, `\\`, control characters; lowercase `\u00xx`), so writing
/// the sorted pairs with serde_json's string escaping *is* JCS. A property test checks it
/// against the canonicaliser.
pub fn flat_id(prefix: &str, fields: &mut [(&str, Option<&str>)]) -> String {
    fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut canonical = Vec::with_capacity(64);
    canonical.push(b'{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            canonical.push(b',');
        }
        // Writing a &str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut canonical, k);
        canonical.push(b':');
        match v {
            Some(v) => {
                let _ = serde_json::to_writer(&mut canonical, v);
            }
            None => canonical.extend_from_slice(b"null"),
        }
    }
    canonical.push(b'}');
    let uuid = Uuid::new_v5(&NAMESPACE, &canonical);
    let mut id = String::with_capacity(prefix.len() + 38);
    id.push_str(prefix);
    id.push_str("--");
    id.push_str(uuid.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
    id
}

/// pycti `Incident.generate_id(name, created)`.
pub fn incident_id(name: &str, created: Option<&str>) -> String {
    let name = normalise_name(name);
    flat_id(
        "incident",
        &mut [("name", Some(&name)), ("created", created)],
    )
}

/// pycti `CaseIncident.generate_id(name, created)`.
pub fn case_incident_id(name: &str, created: Option<&str>) -> String {
    let name = normalise_name(name);
    flat_id(
        "case-incident",
        &mut [("name", Some(&name)), ("created", created)],
    )
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
    flat_id(kind, &mut [("value", Some(value))])
}

/// STIX 2.1 `user-account` id over its id-contributing properties that are present.
pub fn user_account_id(
    account_login: Option<&str>,
    user_id: Option<&str>,
    account_type: Option<&str>,
) -> String {
    let mut fields: Vec<(&str, Option<&str>)> = [
        ("account_type", account_type),
        ("user_id", user_id),
        ("account_login", account_login),
    ]
    .into_iter()
    .filter(|(_, v)| v.is_some())
    .collect();
    flat_id("user-account", &mut fields)
}

/// pycti `StixCoreRelationship.generate_id(type, source, target, start_time, stop_time)`.
pub fn relationship_id(
    relationship_type: &str,
    source_ref: &str,
    target_ref: &str,
    start_time: Option<&str>,
    stop_time: Option<&str>,
) -> String {
    let mut fields: Vec<(&str, Option<&str>)> = Vec::with_capacity(5);
    fields.push(("relationship_type", Some(relationship_type)));
    fields.push(("source_ref", Some(source_ref)));
    fields.push(("target_ref", Some(target_ref)));
    if let Some(start) = start_time {
        fields.push(("start_time", Some(start)));
        if let Some(stop) = stop_time {
            fields.push(("stop_time", Some(stop)));
        }
    }
    flat_id("relationship", &mut fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;
    use serde_json::Map;

    proptest! {
        /// The hand-rolled canonical form is JCS, for any strings (escapes, non-ASCII,
        /// control characters) and nulls.
        #[test]
        fn flat_id_equals_the_canonicaliser(
            a in proptest::option::of(".*"),
            b in ".*",
            c in proptest::option::of("[\\u{0}-\\u{1f}\"\\\\a-z\\u{7f}-\\u{2030}]*"),
        ) {
            let mut map = Map::new();
            map.insert("zeta".into(), a.clone().map_or(Value::Null, Value::from));
            map.insert("alpha".into(), b.clone().into());
            map.insert("mid_key".into(), c.clone().map_or(Value::Null, Value::from));
            let expected = deterministic_id("x", &Value::Object(map));
            let got = flat_id(
                "x",
                &mut [("zeta", a.as_deref()), ("alpha", Some(&b)), ("mid_key", c.as_deref())],
            );
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn id_has_prefix_and_v5_uuid() {
        let id = incident_id("x", None);
        let uuid = id.strip_prefix("incident--").expect("prefix");
        let parsed = Uuid::parse_str(uuid).expect("uuid");
        assert_eq!(parsed.get_version_num(), 5);
    }
}
