//! Decoding of a live-stream event (`data:` JSON, reference 2.6) into a [`StreamEvent`].

use serde_json::{Map, Value};
use thiserror::Error;

use crate::policy::Indicator;

/// Larger `data:` payloads are refused before parsing.
pub const MAX_EVENT_JSON: usize = 4 * 1024 * 1024;
/// The OpenCTI extension carrying `id`, `detection`, `score`.
pub const OPENCTI_EXT: &str = "extension-definition--ea279b3e-5c71-4632-ac08-831c66a786ba";

/// The SSE event name: it decides, never the inner `type` (a filter exit is an `update`
/// sent as `delete`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Create,
    Update,
    Delete,
    Merge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Indicator(Indicator),
    Other { stix_type: String, id: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    pub topic: Topic,
    /// The inner `type` (informative only).
    pub inner_type: Option<String>,
    pub object: Object,
    /// Keys the object had before this event (`context.reverse_patch` `/id`).
    pub previous_ids: Vec<String>,
    /// Keys of the objects a merge absorbed (`context.sources`).
    pub merged_sources: Vec<String>,
}

#[derive(Debug, Error, PartialEq)]
pub enum EventError {
    #[error("event JSON of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("event is not valid JSON: {0}")]
    Json(String),
    #[error("`{0}` is missing")]
    Missing(&'static str),
    #[error("`{0}` has the wrong type")]
    WrongType(&'static str),
    #[error("`{0}` is not an RFC 3339 date")]
    BadDate(&'static str),
}

/// Decodes one event. `Ok(None)`: a topic that carries no object change (`connected`,
/// `heartbeat`, `no-recover`, unknown ones), which the caller handles or ignores.
pub fn decode(sse_event: &str, data: &str) -> Result<Option<StreamEvent>, EventError> {
    let topic = match sse_event {
        "create" => Topic::Create,
        "update" => Topic::Update,
        "delete" => Topic::Delete,
        "merge" => Topic::Merge,
        _ => return Ok(None),
    };
    if data.len() > MAX_EVENT_JSON {
        return Err(EventError::TooLarge(data.len()));
    }
    let root: Value = serde_json::from_str(data).map_err(|e| EventError::Json(e.to_string()))?;
    let root = root.as_object().ok_or(EventError::WrongType("(root)"))?;
    let inner_type = opt_str(root, "type", "type")?.map(str::to_owned);
    let obj = root.get("data").ok_or(EventError::Missing("data"))?;
    let obj = obj.as_object().ok_or(EventError::WrongType("data"))?;
    let object = decode_object(obj)?;
    let mut previous_ids = Vec::new();
    let mut merged_sources = Vec::new();
    if let Some(ctx) = root.get("context").filter(|c| !c.is_null()) {
        let ctx = ctx.as_object().ok_or(EventError::WrongType("context"))?;
        if let Some(rp) = ctx.get("reverse_patch").filter(|c| !c.is_null()) {
            let ops = rp
                .as_array()
                .ok_or(EventError::WrongType("context.reverse_patch"))?;
            for op in ops {
                let op = op
                    .as_object()
                    .ok_or(EventError::WrongType("context.reverse_patch[]"))?;
                if op.get("path").and_then(Value::as_str) == Some("/id") {
                    if let Some(old) = op.get("value").and_then(Value::as_str) {
                        previous_ids.push(old.to_owned());
                    }
                }
            }
        }
        if topic == Topic::Merge {
            if let Some(src) = ctx.get("sources").filter(|c| !c.is_null()) {
                let src = src
                    .as_array()
                    .ok_or(EventError::WrongType("context.sources"))?;
                for s in src {
                    let s = s
                        .as_object()
                        .ok_or(EventError::WrongType("context.sources[]"))?;
                    // Forget both spellings: the source may have been tracked by either.
                    if let Some(id) = internal_id(s)? {
                        merged_sources.push(id.to_owned());
                    }
                    if let Some(id) = opt_str(s, "id", "context.sources[].id")? {
                        merged_sources.push(id.to_owned());
                    }
                }
            }
        }
    }
    Ok(Some(StreamEvent {
        topic,
        inner_type,
        object,
        previous_ids,
        merged_sources,
    }))
}

fn opt_str<'a>(
    m: &'a Map<String, Value>,
    k: &str,
    name: &'static str,
) -> Result<Option<&'a str>, EventError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(EventError::WrongType(name)),
    }
}

fn ext(m: &Map<String, Value>) -> Option<&Map<String, Value>> {
    m.get("extensions")?
        .as_object()?
        .get(OPENCTI_EXT)?
        .as_object()
}

fn internal_id(m: &Map<String, Value>) -> Result<Option<&str>, EventError> {
    match ext(m) {
        Some(e) => opt_str(e, "id", "data.extensions.<opencti>.id"),
        None => Ok(None),
    }
}

fn date(m: &Map<String, Value>, k: &str, name: &'static str) -> Result<Option<i64>, EventError> {
    match opt_str(m, k, name)? {
        None => Ok(None),
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|d| Some(d.timestamp_millis()))
            .map_err(|_| EventError::BadDate(name)),
    }
}

fn decode_object(o: &Map<String, Value>) -> Result<Object, EventError> {
    let stix_type = opt_str(o, "type", "data.type")?.ok_or(EventError::Missing("data.type"))?;
    let id = opt_str(o, "id", "data.id")?.ok_or(EventError::Missing("data.id"))?;
    if stix_type != "indicator" {
        return Ok(Object::Other {
            stix_type: stix_type.to_owned(),
            id: id.to_owned(),
        });
    }
    let e = ext(o);
    let detection = match o
        .get("x_opencti_detection")
        .or_else(|| e.and_then(|e| e.get("detection")))
    {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(EventError::WrongType("data detection")),
    };
    let score = match o
        .get("x_opencti_score")
        .or_else(|| e.and_then(|e| e.get("score")))
    {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().ok_or(EventError::WrongType("data score"))?),
    };
    let revoked = match o.get("revoked") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(EventError::WrongType("data.revoked")),
    };
    Ok(Object::Indicator(Indicator {
        id: id.to_owned(),
        internal_id: internal_id(o)?.map(str::to_owned),
        pattern: opt_str(o, "pattern", "data.pattern")?.map(str::to_owned),
        pattern_type: opt_str(o, "pattern_type", "data.pattern_type")?.map(str::to_owned),
        revoked,
        detection,
        score,
        valid_from: date(o, "valid_from", "data.valid_from")?,
        valid_until: date(o, "valid_until", "data.valid_until")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn indicator_json() -> Value {
        json!({"version": "4", "type": "create", "scope": "external", "message": "creates a Indicator",
            "origin": {"referer": "init-create"},
            "data": {"id": "indicator--a", "type": "indicator", "spec_version": "2.1",
                "pattern": "[ipv4-addr:value = '1.2.3.4']", "pattern_type": "stix", "revoked": false,
                "valid_from": "2024-01-01T00:00:00.000Z", "valid_until": "2024-01-02T00:00:00.500Z",
                "extensions": {OPENCTI_EXT: {"id": "int-a", "detection": true, "score": 75}}}})
    }

    #[test]
    fn decodes_an_indicator_with_extension_fields() {
        let ev = decode("create", &indicator_json().to_string())
            .unwrap()
            .unwrap();
        assert_eq!(ev.topic, Topic::Create);
        let Object::Indicator(i) = ev.object else {
            panic!()
        };
        assert_eq!(i.key(), "int-a");
        assert_eq!(i.detection, Some(true));
        assert_eq!(i.score, Some(75));
        assert_eq!(i.valid_until, Some(1_704_153_600_500));
        assert_eq!(i.valid_from, Some(1_704_067_200_000));
    }

    #[test]
    fn sse_name_decides_and_inner_update_is_kept_informative() {
        let mut j = indicator_json();
        j["type"] = json!("update");
        let ev = decode("delete", &j.to_string()).unwrap().unwrap();
        assert_eq!(
            (ev.topic, ev.inner_type.as_deref()),
            (Topic::Delete, Some("update"))
        );
    }

    #[test]
    fn reverse_patch_id_and_merge_sources() {
        let mut j = indicator_json();
        j["context"] = json!({"reverse_patch": [{"op": "replace", "path": "/pattern", "value": "[url:value = 'u']"},
            {"op": "replace", "path": "/id", "value": "indicator--old"}],
            "sources": [{"id": "indicator--s", "type": "indicator", "extensions": {OPENCTI_EXT: {"id": "int-s"}}}]});
        let ev = decode("merge", &j.to_string()).unwrap().unwrap();
        assert_eq!(ev.previous_ids, vec!["indicator--old"]);
        assert_eq!(ev.merged_sources, vec!["int-s", "indicator--s"]);
    }

    #[test]
    fn other_topics_and_objects() {
        assert_eq!(
            decode("heartbeat", "\"2024-04-10T21:59:34.939Z\""),
            Ok(None)
        );
        assert_eq!(decode("connected", "{}"), Ok(None));
        let ev = decode(
            "create",
            r#"{"data":{"type":"identity","id":"identity--x"}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            ev.object,
            Object::Other {
                stix_type: "identity".into(),
                id: "identity--x".into()
            }
        );
    }

    #[test]
    fn errors_name_what_is_wrong() {
        assert!(matches!(
            decode("create", "{not json"),
            Err(EventError::Json(_))
        ));
        assert_eq!(decode("create", "[]"), Err(EventError::WrongType("(root)")));
        assert_eq!(decode("create", "{}"), Err(EventError::Missing("data")));
        assert_eq!(
            decode("create", r#"{"data":{"type":"indicator"}}"#),
            Err(EventError::Missing("data.id"))
        );
        let mut j = indicator_json();
        j["data"]["valid_until"] = json!("tomorrow");
        assert_eq!(
            decode("update", &j.to_string()),
            Err(EventError::BadDate("data.valid_until"))
        );
        j["data"]["valid_until"] = json!(null);
        j["data"]["revoked"] = json!("yes");
        assert_eq!(
            decode("update", &j.to_string()),
            Err(EventError::WrongType("data.revoked"))
        );
        let big = format!("{{\"x\":\"{}\"}}", "a".repeat(MAX_EVENT_JSON));
        assert_eq!(decode("create", &big), Err(EventError::TooLarge(big.len())));
    }
}
