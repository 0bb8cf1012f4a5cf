//! ESM cases and security events, decoded leniently.
//!
//! Real ESM answers are loose: a one-element list arrives as the bare element, numbers arrive as
//! strings, 64-bit ids exceed what an `f64` holds exactly, and "no value" is spelled with Java's
//! MIN_VALUE sentinels. Decoding never fails on a JSON object: a field of the wrong shape is
//! treated as absent, so one odd field never costs us a whole case.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::de::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// An ESM event id: a Java `long`.
pub type EventId = i64;

/// `Long.MIN_VALUE`, ESM's "no value" for long fields.
pub const NULL_LONG: i64 = i64::MIN;
/// `Integer.MIN_VALUE`, ESM's "no value" for int fields.
pub const NULL_INT: i64 = i32::MIN as i64;

/// `true` when `v` is one of ESM's null sentinels (or JSON null).
pub fn is_null_sentinel(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i == NULL_LONG || i == NULL_INT
            } else if n.is_u64() {
                false
            } else {
                n.as_f64().is_some_and(|f| f == f64::from_bits(1))
            }
        }
        Value::String(s) => {
            let s = s.trim();
            s == "4.9E-324"
                || s == "5e-324"
                || s == "5E-324"
                || s == "4.9e-324"
                || s == "-9223372036854775808"
                || s == "-2147483648"
        }
        _ => false,
    }
}

/// A field's value unless it is missing, null, or a null sentinel.
pub fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !is_null_sentinel(v))
}

/// A list-typed field: a list, a bare scalar (one element), or nothing (missing, null, "").
pub fn as_list(v: Option<&Value>) -> Vec<&Value> {
    match v {
        None => Vec::new(),
        Some(v) if means_none(v) => Vec::new(),
        Some(Value::Array(items)) => items.iter().filter(|v| !is_null_sentinel(v)).collect(),
        Some(other) => vec![other],
    }
}

/// What a list-typed field holds when it holds nothing: null, "" (or blanks), ESM's null
/// sentinel.
fn means_none(v: &Value) -> bool {
    matches!(v, Value::String(s) if s.trim().is_empty()) || is_null_sentinel(v)
}

/// [`as_list`], taking the items out of `v` rather than borrowing them: a batch answer's
/// items are kept, and copying them would double the answer's cost.
pub fn into_list(v: Option<Value>) -> Vec<Value> {
    match v {
        None => Vec::new(),
        Some(v) if means_none(&v) => Vec::new(),
        Some(Value::Array(items)) => items.into_iter().filter(|v| !is_null_sentinel(v)).collect(),
        Some(other) => vec![other],
    }
}

/// An integer from a JSON integer or a decimal string (never through `f64`).
pub fn as_i64(v: &Value) -> Option<i64> {
    if is_null_sentinel(v) {
        return None;
    }
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A string field: a JSON string as is, a number or boolean rendered as Python's `str()` would.
pub fn as_string(v: &Value) -> Option<String> {
    if is_null_sentinel(v) {
        return None;
    }
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "True" } else { "False" }.to_owned()),
        _ => None,
    }
}

/// A non-empty string field (Python truthiness: `""` counts as absent).
fn non_empty_string(obj: &Map<String, Value>, key: &str) -> Option<String> {
    present(obj, key)
        .and_then(as_string)
        .filter(|s| !s.is_empty())
}

/// The reference's timestamp rule: an integer or digit string is epoch seconds, or epoch
/// milliseconds when > 1e12; an ISO-8601 string is parsed (`Z` or an offset; naive = UTC);
/// anything else is no timestamp.
pub fn parse_timestamp(v: &Value) -> Option<DateTime<Utc>> {
    if is_null_sentinel(v) {
        return None;
    }
    match v {
        Value::Number(n) => n.as_i64().and_then(epoch),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<i64>().ok().and_then(epoch)
        }
        Value::String(s) => parse_iso8601(s),
        _ => None,
    }
}

fn epoch(n: i64) -> Option<DateTime<Utc>> {
    let t = if n > 1_000_000_000_000 {
        python_seconds(n as f64 / 1000.0)
    } else {
        DateTime::from_timestamp(n, 0)
    };
    // Python's datetime stops at year 9999: beyond it the reference has no timestamp, and a
    // five-digit year is not a valid STIX timestamp anyway.
    t.filter(|t| (1..=9999).contains(&chrono::Datelike::year(t)))
}

/// `datetime.fromtimestamp(secs)` for a float, as CPython computes it: the fraction is rounded
/// to the microsecond, half to even. The reference divides milliseconds by 1000 in floating
/// point, so from about the year 2240 on (8.6e12 ms) its millisecond is not always the integer
/// one (`32503680000001` ms is `3000-01-01T00:00:00.000Z`): the ids hash that text, so ours
/// must be the same. `n as f64` is exact below 2^53 ms, far beyond the year 9999.
fn python_seconds(secs: f64) -> Option<DateTime<Utc>> {
    let whole = secs.trunc();
    let mut micros = ((secs - whole) * 1e6).round_ties_even();
    let mut whole = whole as i64;
    if micros >= 1e6 {
        micros -= 1e6;
        whole += 1;
    } else if micros < 0.0 {
        micros += 1e6;
        whole -= 1;
    }
    DateTime::from_timestamp(whole, (micros as u32) * 1000)
}

fn parse_iso8601(s: &str) -> Option<DateTime<Utc>> {
    let dt = iso8601::datetime(s.trim()).ok()?;
    let date = match dt.date {
        iso8601::Date::YMD { year, month, day } => NaiveDate::from_ymd_opt(year, month, day)?,
        iso8601::Date::Week { year, ww, d } => NaiveDate::from_isoywd_opt(
            year,
            ww,
            chrono::Weekday::try_from((d as u8).checked_sub(1)?).ok()?,
        )?,
        iso8601::Date::Ordinal { year, ddd } => NaiveDate::from_yo_opt(year, ddd)?,
    };
    let t = dt.time;
    let naive: NaiveDateTime = date.and_hms_milli_opt(t.hour, t.minute, t.second, t.millisecond)?;
    let offset_secs = i64::from(t.tz_offset_hours) * 3600 + i64::from(t.tz_offset_minutes) * 60;
    let utc = naive.and_utc() - chrono::Duration::seconds(offset_secs);
    Some(utc)
}

/// The first of `keys` that is present decides; a present but unparseable value means "no
/// timestamp" (the reference does not fall through to the next key).
fn first_present_time(obj: &Map<String, Value>, keys: &[&str]) -> Option<DateTime<Utc>> {
    keys.iter()
        .find_map(|k| present(obj, k))
        .and_then(parse_timestamp)
}

/// STIX severity vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Severity {
    #[default]
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// The case priority OpenCTI pairs with a severity: critical P1 ... low P4.
    pub fn priority(self) -> &'static str {
        match self {
            Severity::Critical => "P1",
            Severity::High => "P2",
            Severity::Medium => "P3",
            Severity::Low => "P4",
        }
    }

    /// The reference's numeric bands: >=9 critical, >=7 high, >=4 medium, else low.
    pub fn from_number(n: f64) -> Severity {
        if n >= 9.0 {
            Severity::Critical
        } else if n >= 7.0 {
            Severity::High
        } else if n >= 4.0 {
            Severity::Medium
        } else {
            Severity::Low
        }
    }

    /// A severity from an ESM field: a number, a digit string, one of the STIX words, or one of
    /// ESM's `consequenceSeverity` enum words (NONE/INSIGNIFICANT low, MARGINAL medium,
    /// CRITICAL/CATASTROPHIC critical). Anything else is `None`.
    pub fn from_value(v: &Value) -> Option<Severity> {
        match v {
            Value::Number(n) => n.as_f64().map(Severity::from_number),
            Value::String(s) => {
                let t = s.trim();
                if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
                    return t.parse::<f64>().ok().map(Severity::from_number);
                }
                match t.to_ascii_lowercase().as_str() {
                    "low" | "none" | "insignificant" => Some(Severity::Low),
                    "medium" | "marginal" => Some(Severity::Medium),
                    "high" => Some(Severity::High),
                    "critical" | "catastrophic" => Some(Severity::Critical),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// An ArcSight case, with the fields the connector uses.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Case {
    /// `resourceid`, else `id`, else `uri`: the case's id in ESM and its external id.
    pub external_id: Option<String>,
    pub name: Option<String>,
    /// `createdTimestamp`, else `createTime`.
    pub created: Option<DateTime<Utc>>,
    /// `modifiedTimestamp`, else `modifiedTime`.
    pub modified: Option<DateTime<Utc>>,
    /// `modifiedTimestamp` in epoch milliseconds as ESM sent it: the sync watermark's clock.
    pub modified_ms: Option<i64>,
    /// `consequenceSeverity`, else `severity`.
    pub severity: Option<Severity>,
    /// `message`, else `description`.
    pub description: Option<String>,
    /// `eventIDs`, else `eventIds`, `events`, `baseEventIds`.
    pub event_ids: Vec<EventId>,
    pub stage: Option<String>,
    pub ticket_type: Option<String>,
}

impl Case {
    /// Decodes a case from any JSON value; a non-object yields `None`.
    pub fn from_value(v: &Value) -> Option<Case> {
        let obj = v.as_object()?;
        let external_id = ["resourceid", "id", "uri"]
            .iter()
            .find_map(|k| non_empty_string(obj, k));
        let modified_ms = ["modifiedTimestamp", "modifiedTime"]
            .iter()
            .find_map(|k| present(obj, k))
            .and_then(parse_timestamp)
            .map(|t| t.timestamp_millis());
        let event_ids = ["eventIDs", "eventIds", "events", "baseEventIds"]
            .iter()
            .find(|k| obj.contains_key(**k))
            .map(|k| {
                as_list(obj.get(*k))
                    .into_iter()
                    .filter_map(as_i64)
                    .collect()
            })
            .unwrap_or_default();
        Some(Case {
            external_id,
            name: non_empty_string(obj, "name"),
            created: first_present_time(obj, &["createdTimestamp", "createTime"]),
            modified: first_present_time(obj, &["modifiedTimestamp", "modifiedTime"]),
            modified_ms,
            severity: ["consequenceSeverity", "severity"]
                .iter()
                .find_map(|k| present(obj, k))
                .and_then(Severity::from_value),
            description: non_empty_string(obj, "message")
                .or_else(|| non_empty_string(obj, "description")),
            event_ids,
            stage: non_empty_string(obj, "stage"),
            ticket_type: non_empty_string(obj, "ticketType"),
        })
    }
}

impl<'de> Deserialize<'de> for Case {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Case::from_value(&v).ok_or_else(|| serde::de::Error::custom("a case must be a JSON object"))
    }
}

/// One end of an event (`source`, `destination`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoint {
    /// From `addressAsBytes` (4 or 16 bytes) when present, else `address` as an unsigned 32-bit
    /// IPv4 address.
    pub ip: Option<IpAddr>,
    pub host_name: Option<String>,
    pub user_name: Option<String>,
}

impl Endpoint {
    fn from_value(v: &Value) -> Option<Endpoint> {
        let obj = v.as_object()?;
        let from_bytes = present(obj, "addressAsBytes")
            .and_then(Value::as_str)
            .and_then(|b64| {
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .ok()
            })
            .and_then(|bytes| match bytes.len() {
                4 => Some(IpAddr::V4(Ipv4Addr::new(
                    bytes[0], bytes[1], bytes[2], bytes[3],
                ))),
                16 => {
                    let arr: [u8; 16] = bytes.try_into().ok()?;
                    Some(IpAddr::V6(Ipv6Addr::from(arr)))
                }
                _ => None,
            });
        let from_int = || {
            present(obj, "address")
                .and_then(as_i64)
                .and_then(|n| u32::try_from(n).ok())
                .map(|n| IpAddr::V4(Ipv4Addr::from(n)))
        };
        let text = |k: &str| {
            non_empty_string(obj, k)
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        let ep = Endpoint {
            ip: from_bytes.or_else(from_int),
            host_name: text("hostName"),
            user_name: text("userName"),
        };
        (ep != Endpoint::default()).then_some(ep)
    }
}

/// An ArcSight security event, with the fields the connector uses.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SecurityEvent {
    /// `eventId`, else `id` (stripped); if empty, the first of `baseEventIds`.
    pub event_id: Option<String>,
    /// `eventId` as a number, to match events to the cases that list them.
    pub event_id_num: Option<EventId>,
    pub name: Option<String>,
    pub message: Option<String>,
    /// First present of `endTime`, `startTime`, `managerReceiptTime`.
    pub time: Option<DateTime<Utc>>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    /// From `priority`, else `agentSeverity`; low when neither says otherwise.
    pub severity: Severity,
    pub source: Option<Endpoint>,
    pub destination: Option<Endpoint>,
}

impl SecurityEvent {
    /// Decodes an event from any JSON value; a non-object yields `None`.
    pub fn from_value(v: &Value) -> Option<SecurityEvent> {
        let obj = v.as_object()?;
        let event_id_num = present(obj, "eventId").and_then(as_i64);
        let event_id = ["eventId", "id"]
            .iter()
            .find_map(|k| non_empty_string(obj, k))
            .map(|s| pystr::strip(&s).to_owned())
            .filter(|s| !s.is_empty())
            .or_else(|| {
                as_list(obj.get("baseEventIds"))
                    .first()
                    .and_then(|v| as_string(v))
                    .map(|s| pystr::strip(&s).to_owned())
                    .filter(|s| !s.is_empty())
            });
        let severity = ["priority", "agentSeverity"]
            .iter()
            .find_map(|k| present(obj, k))
            .and_then(Severity::from_value)
            .unwrap_or(Severity::Low);
        Some(SecurityEvent {
            event_id,
            event_id_num,
            name: non_empty_string(obj, "name"),
            message: non_empty_string(obj, "message"),
            time: first_present_time(obj, &["endTime", "startTime", "managerReceiptTime"]),
            start_time: present(obj, "startTime").and_then(parse_timestamp),
            end_time: present(obj, "endTime").and_then(parse_timestamp),
            severity,
            source: obj.get("source").and_then(Endpoint::from_value),
            destination: obj.get("destination").and_then(Endpoint::from_value),
        })
    }
}

impl<'de> Deserialize<'de> for SecurityEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        SecurityEvent::from_value(&v)
            .ok_or_else(|| serde::de::Error::custom("a security event must be a JSON object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_fields_accept_scalar_list_or_nothing() {
        assert_eq!(as_list(Some(&json!(5))).len(), 1);
        assert_eq!(as_list(Some(&json!([1, 2]))).len(), 2);
        assert!(as_list(Some(&json!(""))).is_empty());
        assert!(as_list(None).is_empty());
        assert!(as_list(Some(&json!(-9223372036854775808i64))).is_empty());
        for v in [
            json!(5),
            json!([1, 2, -9223372036854775808i64]),
            json!(""),
            json!(null),
            json!(-9223372036854775808i64),
            json!({"a": 1}),
        ] {
            let borrowed: Vec<Value> = as_list(Some(&v)).into_iter().cloned().collect();
            assert_eq!(into_list(Some(v.clone())), borrowed, "{v}");
        }
        assert!(into_list(None).is_empty());
    }

    #[test]
    fn sentinels_are_absent() {
        for v in [
            json!(-9223372036854775808i64),
            json!(-2147483648),
            json!("4.9E-324"),
            json!(5e-324),
            Value::Null,
        ] {
            assert!(is_null_sentinel(&v), "{v}");
            assert_eq!(as_i64(&v), None);
        }
        assert!(!is_null_sentinel(&json!(0)));
        assert!(!is_null_sentinel(&json!(-1)));
    }

    #[test]
    fn big_event_ids_stay_exact() {
        let e = SecurityEvent::from_value(&json!({"eventId": 2305843016676439806u64})).unwrap();
        assert_eq!(e.event_id.as_deref(), Some("2305843016676439806"));
        assert_eq!(e.event_id_num, Some(2305843016676439806));
        let e = SecurityEvent::from_value(&json!({"eventId": "9007199254740993"})).unwrap();
        assert_eq!(e.event_id_num, Some(9007199254740993));
    }

    #[test]
    fn timestamps_follow_the_reference() {
        let ts =
            |v: Value| parse_timestamp(&v).map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
        assert_eq!(
            ts(json!(1708770826)).as_deref(),
            Some("2024-02-24T10:33:46.000Z")
        );
        assert_eq!(
            ts(json!("1709490150160")).as_deref(),
            Some("2024-03-03T18:22:30.160Z")
        );
        assert_eq!(
            ts(json!("2024-05-02T10:20:30.123+02:00")).as_deref(),
            Some("2024-05-02T08:20:30.123Z")
        );
        assert_eq!(
            ts(json!("2024-05-01T10:20:30")).as_deref(),
            Some("2024-05-01T10:20:30.000Z")
        );
        assert_eq!(ts(json!("garbage")), None);
        assert_eq!(ts(json!({"year": 2019})), None);
    }

    #[test]
    fn a_present_but_bad_time_does_not_fall_through() {
        let e = SecurityEvent::from_value(
            &json!({"endTime": "garbage", "startTime": 1708648102422i64}),
        )
        .unwrap();
        assert_eq!(e.time, None);
        assert!(e.start_time.is_some());
    }

    #[test]
    fn endpoints_prefer_bytes_and_skip_sentinels() {
        let e = SecurityEvent::from_value(&json!({
            "source": {"address": -9223372036854775808i64, "port": -2147483648, "userName": "TEST"},
            "destination": {"address": 3232235786u64, "addressAsBytes": "wKgBCg==", "hostName": "dc01"}
        }))
        .unwrap();
        let src = e.source.unwrap();
        assert_eq!(src.ip, None);
        assert_eq!(src.user_name.as_deref(), Some("TEST"));
        let dst = e.destination.unwrap();
        assert_eq!(dst.ip, Some("192.168.1.10".parse().unwrap()));
        let v6 =
            Endpoint::from_value(&json!({"addressAsBytes": "IAENuAAAAAAAAAAAAAAAAQ=="})).unwrap();
        assert_eq!(v6.ip, Some("2001:db8::1".parse().unwrap()));
        let int = Endpoint::from_value(&json!({"address": 170524911})).unwrap();
        assert_eq!(int.ip, Some("10.42.0.239".parse().unwrap()));
    }

    #[test]
    fn esm_severity_words_map_to_stix() {
        let sev = |v: Value| Severity::from_value(&v);
        assert_eq!(sev(json!("NONE")), Some(Severity::Low));
        assert_eq!(sev(json!("INSIGNIFICANT")), Some(Severity::Low));
        assert_eq!(sev(json!("MARGINAL")), Some(Severity::Medium));
        assert_eq!(sev(json!("CRITICAL")), Some(Severity::Critical));
        assert_eq!(sev(json!("CATASTROPHIC")), Some(Severity::Critical));
        assert_eq!(sev(json!("7")), Some(Severity::High));
        assert_eq!(sev(json!(4)), Some(Severity::Medium));
        assert_eq!(sev(json!("bogus")), None);
    }
}
