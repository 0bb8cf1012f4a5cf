//! Objects and events as the platform builds them: the STIX indicator of
//! `convertIndicatorToStix` with the OpenCTI extension, the dependencies it references, and
//! the version 4 event JSON of `stream-utils.ts` (reference stream-arcsight.md 2.6).

use serde_json::{Value, json};

use super::log::Kind;

/// The OpenCTI STIX extension (internal id, detection, score...).
pub const OPENCTI_EXT: &str = "extension-definition--ea279b3e-5c71-4632-ac08-831c66a786ba";
/// The platform's namespace for standard ids (uuid v5 of the id contributing properties).
const OPENCTI_NAMESPACE: uuid::Uuid = uuid::uuid!("00abedb4-aa42-466c-9c01-fed23315a9b7");

/// The author every simulated indicator has unless a test says otherwise.
pub const DEFAULT_AUTHOR: &str = "identity--8cb00c79-ab20-5ed4-b37d-337241b96a29";
/// TLP markings as the platform ships them (their real standard ids).
pub const TLP_CLEAR: &str = "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9";
pub const TLP_GREEN: &str = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da";
pub const TLP_AMBER: &str = "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82";
pub const TLP_RED: &str = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed";

/// A simulated indicator, kept compact (the store holds a million of them); its STIX form is
/// built when it is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct IndicatorSpec {
    /// The platform's internal id (the extension's `id`), the store's key.
    pub internal_id: String,
    pub name: String,
    pub description: Option<String>,
    pub pattern: String,
    pub pattern_type: String,
    pub main_observable_type: Option<String>,
    pub revoked: bool,
    pub detection: bool,
    pub score: i64,
    pub confidence: i64,
    pub labels: Vec<String>,
    pub valid_from_ms: i64,
    pub valid_until_ms: Option<i64>,
    /// `created_by_ref` (a dependency: published before the indicator on a connection).
    pub created_by: Option<String>,
    /// `object_marking_refs` (dependencies too).
    pub markings: Vec<String>,
    pub is_inferred: bool,
    /// `created_at` / `updated_at`; 0 = set by the simulator from its clock when pushed.
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl IndicatorSpec {
    /// A STIX-pattern indicator, detection on, score 50, authored and marked TLP:CLEAR.
    pub fn new(pattern: impl Into<String>) -> Self {
        let pattern = pattern.into();
        IndicatorSpec {
            internal_id: uuid::Uuid::new_v4().to_string(),
            name: pattern.clone(),
            description: None,
            main_observable_type: main_observable_type(&pattern).map(str::to_owned),
            pattern,
            pattern_type: "stix".into(),
            revoked: false,
            detection: true,
            score: 50,
            confidence: 100,
            labels: Vec::new(),
            valid_from_ms: 0,
            valid_until_ms: None,
            created_by: Some(DEFAULT_AUTHOR.into()),
            markings: vec![TLP_CLEAR.into()],
            is_inferred: false,
            created_ms: 0,
            updated_ms: 0,
        }
    }

    /// `[<object>:<path> = '<value>']` with the value escaped as STIX requires (`\` and `'`).
    pub fn equality(object_path: &str, value: &str) -> Self {
        let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
        let mut s = IndicatorSpec::new(format!("[{object_path} = '{escaped}']"));
        s.name = value.to_owned();
        s
    }

    pub fn ipv4(v: &str) -> Self {
        Self::equality("ipv4-addr:value", v)
    }
    pub fn ipv6(v: &str) -> Self {
        Self::equality("ipv6-addr:value", v)
    }
    pub fn domain(v: &str) -> Self {
        Self::equality("domain-name:value", v)
    }
    pub fn url(v: &str) -> Self {
        Self::equality("url:value", v)
    }
    pub fn md5(v: &str) -> Self {
        Self::equality("file:hashes.MD5", v)
    }
    pub fn sha1(v: &str) -> Self {
        Self::equality("file:hashes.'SHA-1'", v)
    }
    pub fn sha256(v: &str) -> Self {
        Self::equality("file:hashes.'SHA-256'", v)
    }

    /// Builder: the internal id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.internal_id = id.into();
        self
    }

    /// Builder: the labels.
    pub fn with_labels(mut self, labels: &[&str]) -> Self {
        self.labels = labels.iter().map(|l| (*l).to_owned()).collect();
        self
    }

    /// Builder: no author and no marking (no dependency events).
    pub fn without_dependencies(mut self) -> Self {
        self.created_by = None;
        self.markings.clear();
        self
    }

    /// `indicator--<uuid5>` of the pattern, as the platform's `generateStandardId`.
    pub fn standard_id(&self) -> String {
        let name = json!({ "pattern": self.pattern }).to_string();
        format!(
            "indicator--{}",
            uuid::Uuid::new_v5(&OPENCTI_NAMESPACE, name.as_bytes())
        )
    }

    /// The stix ids published before this indicator.
    pub fn dependencies(&self) -> Vec<String> {
        self.created_by
            .iter()
            .chain(self.markings.iter())
            .cloned()
            .collect()
    }

    /// The STIX 2.1 object the platform sends (`convertIndicatorToStix`).
    pub fn to_stix(&self) -> Value {
        let valid_from = self.valid_from_ms.max(self.created_ms);
        let mut valid_until = self.valid_until_ms;
        // The platform bumps `valid_until` by 1 s when it equals `valid_from`.
        if valid_until == Some(valid_from) {
            valid_until = Some(valid_from + 1000);
        }
        let observable_values = observable_value(&self.pattern)
            .map(|(t, v)| vec![json!({"type": t, "value": v})])
            .unwrap_or_default();
        let mut o = json!({
            "id": self.standard_id(),
            "spec_version": "2.1",
            "type": "indicator",
            "created": iso(self.created_ms),
            "modified": iso(self.updated_ms),
            "revoked": self.revoked,
            "confidence": self.confidence,
            "lang": "en",
            "labels": self.labels,
            "name": self.name,
            "pattern": self.pattern,
            "pattern_type": self.pattern_type,
            "pattern_version": "2.1",
            "valid_from": iso(valid_from),
            "x_opencti_score": self.score,
            "x_opencti_detection": self.detection,
            "x_opencti_main_observable_type": self.main_observable_type,
            "extensions": {
                OPENCTI_EXT: {
                    "extension_type": "property-extension",
                    "id": self.internal_id,
                    "type": "Indicator",
                    "created_at": iso(self.created_ms),
                    "updated_at": iso(self.updated_ms),
                    "is_inferred": self.is_inferred,
                    "stix_ids": [],
                    "creator_ids": ["88ec0c6a-13ce-5e39-b486-354fe4a7084f"],
                    "labels_ids": [],
                    "detection": self.detection,
                    "score": self.score,
                    "main_observable_type": self.main_observable_type,
                    "observable_values": observable_values,
                }
            }
        });
        let m = o.as_object_mut().expect("an object");
        if let Some(d) = &self.description {
            m.insert("description".into(), json!(d));
        }
        if let Some(v) = valid_until {
            m.insert("valid_until".into(), json!(iso(v)));
        }
        if let Some(a) = &self.created_by {
            m.insert("created_by_ref".into(), json!(a));
        }
        if !self.markings.is_empty() {
            m.insert("object_marking_refs".into(), json!(self.markings));
        }
        o
    }
}

/// The platform's `main_observable_type` for the simple patterns (others: none).
fn main_observable_type(pattern: &str) -> Option<&'static str> {
    let p = pattern.trim_start_matches('[');
    [
        ("ipv4-addr:", "IPv4-Addr"),
        ("ipv6-addr:", "IPv6-Addr"),
        ("domain-name:", "Domain-Name"),
        ("url:", "Url"),
        ("file:", "StixFile"),
        ("email-addr:", "Email-Addr"),
    ]
    .into_iter()
    .find(|(prefix, _)| p.starts_with(prefix))
    .map(|(_, t)| t)
}

/// `observable_values[0]` of a one-comparison pattern (informative: consumers must parse the
/// pattern, as the reference says).
fn observable_value(pattern: &str) -> Option<(&'static str, String)> {
    let t = main_observable_type(pattern)?;
    let start = pattern.find('\'')? + 1;
    let end = pattern.rfind('\'')?;
    (end > start).then(|| {
        (
            t,
            pattern[start..end]
                .replace("\\'", "'")
                .replace("\\\\", "\\"),
        )
    })
}

/// The dependency objects the simulator knows (author, TLP markings).
pub(crate) fn dependency_object(stix_id: &str) -> Value {
    let marking = |name: &str, color: &str| {
        json!({"id": stix_id, "spec_version": "2.1", "type": "marking-definition",
            "created": "2022-09-13T15:29:36.343Z", "definition_type": "TLP",
            "name": name, "definition": {"tlp": color},
            "extensions": {OPENCTI_EXT: {"extension_type": "property-extension",
                "id": uuid::Uuid::new_v5(&OPENCTI_NAMESPACE, stix_id.as_bytes()).to_string(),
                "type": "Marking-Definition", "is_inferred": false}}})
    };
    match stix_id {
        TLP_CLEAR => marking("TLP:CLEAR", "clear"),
        TLP_GREEN => marking("TLP:GREEN", "green"),
        TLP_AMBER => marking("TLP:AMBER", "amber"),
        TLP_RED => marking("TLP:RED", "red"),
        _ => json!({"id": stix_id, "spec_version": "2.1", "type": "identity",
            "created": "2023-01-01T00:00:00.000Z", "modified": "2023-01-01T00:00:00.000Z",
            "name": "Simulated CTI team", "identity_class": "organization",
            "extensions": {OPENCTI_EXT: {"extension_type": "property-extension",
                "id": uuid::Uuid::new_v5(&OPENCTI_NAMESPACE, stix_id.as_bytes()).to_string(),
                "type": "Organization", "is_inferred": false}}}),
    }
}

/// ISO 8601 with milliseconds and `Z`, as the platform writes dates.
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A user action's origin, as the platform records it (serialised once).
fn user_origin() -> &'static str {
    static ORIGIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(|| {
        json!({"socket": "query", "ip": "::ffff:127.0.0.1",
            "user_id": "88ec0c6a-13ce-5e39-b486-354fe4a7084f", "group_ids": [],
            "organization_ids": [], "user_metadata": {},
            "referer": "http://localhost:4000/dashboard/observations/indicators"})
        .to_string()
    })
}

/// The event JSON (`EVENT_CURRENT_VERSION = '4'`), written directly (no intermediate tree:
/// pushing 20k events stays fast in unoptimised test builds).
pub(crate) fn event_json(
    kind: Kind,
    message: String,
    origin: Option<Value>,
    data: &Value,
    context: Option<Value>,
) -> String {
    let data = data.to_string();
    let mut e = String::with_capacity(data.len() + 600);
    e.push_str("{\"version\":\"4\",\"type\":\"");
    e.push_str(kind.as_str());
    e.push_str("\",\"scope\":\"external\",\"message\":");
    e.push_str(&Value::String(message).to_string());
    e.push_str(",\"origin\":");
    match origin {
        Some(o) => e.push_str(&o.to_string()),
        None => e.push_str(user_origin()),
    }
    e.push_str(",\"data\":");
    e.push_str(&data);
    if let Some(c) = context {
        e.push_str(",\"context\":");
        e.push_str(&c.to_string());
    }
    e.push_str(",\"event_id\":\"");
    e.push_str(&uuid::Uuid::new_v4().to_string());
    e.push_str("\"}");
    e
}

pub(crate) fn message(kind: Kind, stix: &Value) -> String {
    let name = stix["name"].as_str().unwrap_or_default();
    let what = match stix["type"].as_str() {
        Some("indicator") => "Indicator",
        Some("identity") => "Organization",
        Some("marking-definition") => "Marking-Definition",
        Some(other) => other,
        None => "object",
    };
    match kind {
        Kind::Create => format!("creates a {what} `{name}`"),
        Kind::Update => format!("updates `{name}`"),
        Kind::Delete => format!("deletes a {what} `{name}`"),
        Kind::Merge => format!("merges {what} `{name}`"),
    }
}

/// RFC 6902 operations turning `from` into `to`: objects compared key by key (recursively),
/// anything else replaced whole. `reverse_patch` is `diff(after, before)`.
pub(crate) fn diff(from: &Value, to: &Value) -> Vec<Value> {
    let mut ops = Vec::new();
    diff_at("", from, to, &mut ops);
    ops
}

fn diff_at(path: &str, from: &Value, to: &Value, ops: &mut Vec<Value>) {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, vb) in b {
                let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                match a.get(k) {
                    None => ops.push(json!({"op": "add", "path": p, "value": vb})),
                    Some(va) if va != vb => diff_at(&p, va, vb, ops),
                    Some(_) => {}
                }
            }
            for k in a.keys().filter(|k| !b.contains_key(*k)) {
                let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                ops.push(json!({"op": "remove", "path": p}));
            }
        }
        _ if from != to => ops.push(json!({"op": "replace", "path": path, "value": to})),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_patch_of_a_pattern_change_names_pattern_and_id() {
        let a = IndicatorSpec::ipv4("1.1.1.1");
        let mut b = a.clone();
        b.pattern = "[ipv4-addr:value = '2.2.2.2']".into();
        let (sa, sb) = (a.to_stix(), b.to_stix());
        let rev = diff(&sb, &sa);
        assert!(rev.contains(
            &json!({"op": "replace", "path": "/pattern", "value": "[ipv4-addr:value = '1.1.1.1']"})
        ));
        assert!(rev.contains(&json!({"op": "replace", "path": "/id", "value": sa["id"]})));
        assert_ne!(sa["id"], sb["id"]);
    }

    #[test]
    fn escaped_values_and_extension() {
        let s = IndicatorSpec::url("http://x/it's\\");
        assert_eq!(s.pattern, r"[url:value = 'http://x/it\'s\\']");
        let stix = s.to_stix();
        assert_eq!(stix["extensions"][OPENCTI_EXT]["id"], json!(s.internal_id));
        assert_eq!(
            stix["extensions"][OPENCTI_EXT]["observable_values"][0]["value"],
            json!("http://x/it's\\")
        );
    }
}
