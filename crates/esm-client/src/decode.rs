//! What ESM's JSON looks like on the wire: the two key dialects, the answer envelopes, the
//! invalid JSON it sometimes sends, and its HTML error pages.
//!
//! Decoding is liberal: whichever dialect was configured or detected, answers in either dialect
//! are accepted, because mixed fleets and proxies exist and refusing a readable answer helps
//! nobody.

use serde_json::{Map, Value};

/// Key style of the JSON bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `cas.findAllIds`, `cas.authToken`, ...: ESM <= 7.8.
    Prefixed,
    /// `findAllIds`, `authToken`, ...: ESM 7.9+.
    Plain,
}

/// Which dialect to speak (`ARCSIGHT_INCIDENTS_API_DIALECT`): a fixed one, or the one the login
/// answer is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiDialect {
    /// Detected from the login answer.
    #[default]
    Auto,
    /// Keys with service prefixes (`cas.`, `sev.`, `log.`): ESM <= 7.8.
    Prefixed,
    /// Keys without prefixes: ESM 7.9+.
    Plain,
}

/// The ESM service an operation belongs to; it decides the key prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Case,
    SecurityEvent,
    ActiveList,
}

impl Service {
    fn prefix(self) -> &'static str {
        match self {
            Service::Case => "cas",
            Service::SecurityEvent => "sev",
            Service::ActiveList => "act",
        }
    }
}

impl Dialect {
    /// A key in this dialect: `cas.authToken` or `authToken`.
    pub(crate) fn key(self, service: Service, name: &str) -> String {
        match self {
            Dialect::Prefixed => format!("{}.{name}", service.prefix()),
            Dialect::Plain => name.to_owned(),
        }
    }

    /// `{"<op>": {<fields>}}` with this dialect's keys.
    pub(crate) fn request(self, service: Service, op: &str, fields: Vec<(&str, Value)>) -> Value {
        let inner: Map<String, Value> = fields
            .into_iter()
            .map(|(k, v)| (self.key(service, k), v))
            .collect();
        let mut outer = Map::new();
        outer.insert(self.key(service, op), Value::Object(inner));
        Value::Object(outer)
    }

    /// The dialect a login answer is written in: prefixed keys mean ESM <= 7.8.
    pub(crate) fn detect(login_answer: &Value) -> Option<Dialect> {
        let obj = login_answer.as_object()?;
        obj.keys().find_map(|k| {
            if k == "loginResponse" {
                Some(Dialect::Plain)
            } else if k.ends_with(".loginResponse") {
                Some(Dialect::Prefixed)
            } else {
                None
            }
        })
    }
}

/// Takes `name` itself or any `<prefix>.name` out of `obj`.
fn take_key(obj: &mut Map<String, Value>, name: &str) -> Option<Value> {
    if let Some(v) = obj.remove(name) {
        return Some(v);
    }
    let key = obj
        .keys()
        .find(|k| k.rsplit_once('.').is_some_and(|(_, n)| n == name))?
        .clone();
    obj.remove(&key)
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// The payload of `{"<p>.<op>Response": {"<p>.return": X}}` (either dialect): `Some(X)`, or
/// `None` when ESM said "nothing" (missing `return`, `""`, `null`, `{}`, `[]`, empty body).
/// An answer without the response key is a shape error (the message names no data).
pub fn unwrap_answer(op: &str, answer: Value) -> Result<Option<Value>, String> {
    if is_empty_value(&answer) {
        return Ok(None);
    }
    let Value::Object(mut obj) = answer else {
        return Err(format!("expected an object with {op}Response"));
    };
    // Moved out, not cloned: an answer can be tens of MiB of events, and a copy would double
    // both the peak and the time spent on it.
    let Some(response) = take_key(&mut obj, &format!("{op}Response")) else {
        return Err(format!("no {op}Response in the answer"));
    };
    if is_empty_value(&response) {
        return Ok(None);
    }
    match response {
        Value::Object(mut inner) => {
            Ok(take_key(&mut inner, "return").filter(|v| !is_empty_value(v)))
        }
        // Some renderers drop the `return` level when it is the only one.
        other => Ok(Some(other)),
    }
}

/// Parses a body as JSON; when that fails, repairs stray backslashes and control characters
/// inside strings and tries once more. The first error is returned if the repair does not help.
pub fn parse_json(body: &str) -> Result<Value, serde_json::Error> {
    match serde_json::from_str(body) {
        Ok(v) => Ok(v),
        Err(first) => match repair_json(body) {
            Some(fixed) => serde_json::from_str(&fixed).map_err(|_| first),
            None => Err(first),
        },
    }
}

/// Escapes every `\` inside a JSON string that does not start a valid escape
/// (`\" \\ \/ \b \f \n \r \t \uXXXX`), and raw control characters inside strings. `None` when
/// nothing needed repair.
pub fn repair_json(body: &str) -> Option<String> {
    let chars: Vec<char> = body.chars().collect();
    let mut out = String::with_capacity(body.len() + 16);
    let mut changed = false;
    let mut in_string = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if !in_string {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
            i += 1;
            continue;
        }
        match c {
            '"' => {
                in_string = false;
                out.push(c);
                i += 1;
            }
            '\\' => {
                let next = chars.get(i + 1).copied();
                let valid = match next {
                    Some('"' | '\\' | '/' | 'b' | 'f' | 'n' | 'r' | 't') => true,
                    Some('u') => {
                        chars.len() >= i + 6
                            && chars[i + 2..i + 6].iter().all(char::is_ascii_hexdigit)
                    }
                    _ => false,
                };
                if valid {
                    // Copy the escape as a unit so `\"` does not end the string.
                    out.push('\\');
                    if let Some(n) = next {
                        out.push(n);
                    }
                    i += 2;
                } else {
                    out.push_str("\\\\");
                    changed = true;
                    i += 1;
                }
            }
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
                changed = true;
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    changed.then_some(out)
}

/// An HTML page rather than data: by content type, or by what the body starts with (ESM's
/// Tomcat pages are sometimes served as `text/plain` or with no type).
pub fn is_html(content_type: Option<&str>, body: &str) -> bool {
    if content_type.is_some_and(|t| t.to_ascii_lowercase().contains("html")) {
        return true;
    }
    let head: String = body
        .trim_start()
        .chars()
        .take(64)
        .collect::<String>()
        .to_ascii_lowercase();
    head.starts_with("<!doctype")
        || head.starts_with("<html")
        || head.starts_with("<head")
        || head.starts_with("<body")
}

/// The page's text pieces between tags, entities decoded.
fn text_segments(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = html;
    while !rest.is_empty() {
        let (text, after) = match rest.find('<') {
            Some(p) => (&rest[..p], &rest[p..]),
            None => (rest, ""),
        };
        let t = decode_entities(text.trim());
        if !t.is_empty() {
            out.push(t);
        }
        rest = match after.find('>') {
            Some(p) => &after[p + 1..],
            None => "",
        };
    }
    out
}

fn decode_entities(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn is_exception_name(token: &str) -> bool {
    let token = token.trim_end_matches(':');
    let last = token.rsplit('.').next().unwrap_or(token);
    (last.ends_with("Exception") || last.ends_with("Error") || last.ends_with("Fault"))
        && last.len() > "Error".len()
        // Tomcat pages say "Type Exception Report": a bare suffix is a word, not a class.
        && !matches!(last, "Exception" | "Error" | "Fault")
        && last.starts_with(|c: char| c.is_ascii_uppercase())
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '$' || c == '_')
}

/// The Java exception an error page names (`com.x.InvalidResourceIDException: Invalid resource
/// ID ...`), at most 300 characters. `None` when the page names none.
pub fn java_exception(html: &str) -> Option<String> {
    for seg in text_segments(html) {
        let mut offset = 0;
        for token in seg.split_whitespace() {
            let start = seg[offset..].find(token).map_or(offset, |p| offset + p);
            offset = start + token.len();
            if is_exception_name(token) {
                let found: String = seg[start..].chars().take(300).collect();
                return Some(found.trim().to_owned());
            }
        }
    }
    None
}

/// A page or text that says the operation itself does not exist on this ESM (older releases
/// lack `getResourcesByIds`).
pub(crate) fn names_missing_operation(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "nosuchmethod",
        "operation not found",
        "no such operation",
        "unknown operation",
        "no operation found",
    ]
    .iter()
    .any(|m| t.contains(m))
}

/// A body that says the session token is no longer valid.
pub fn says_token_invalid(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    (t.contains("token") || t.contains("session"))
        && ["invalid", "expired", "not valid", "unknown"]
            .iter()
            .any(|m| t.contains(m))
}

/// Exceptions that retrying cannot fix: the request itself is wrong.
pub(crate) fn is_permanent_exception(exception: &str) -> bool {
    const MARKERS: &[&str] = &[
        "invalidresourceid",
        // ESM's answer for an unknown Active List (or other resource) id.
        "resourcenotfound",
        "authenticationexception",
        "illegalargument",
        "nosuchmethod",
        "no such operation",
        "operation not found",
        "authorizationexception",
    ];
    let e = exception.to_ascii_lowercase();
    MARKERS.iter().any(|m| e.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_keys_follow_the_dialect() {
        let body =
            Dialect::Prefixed.request(Service::Case, "findAllIds", vec![("authToken", json!("T"))]);
        assert_eq!(body, json!({"cas.findAllIds": {"cas.authToken": "T"}}));
        let body = Dialect::Plain.request(
            Service::SecurityEvent,
            "getSecurityEvents",
            vec![
                ("authToken", json!("T")),
                ("ids", json!([1])),
                ("startMillis", json!(-1)),
            ],
        );
        assert_eq!(
            body,
            json!({"getSecurityEvents": {"authToken": "T", "ids": [1], "startMillis": -1}})
        );
    }

    #[test]
    fn dialect_detection() {
        assert_eq!(
            Dialect::detect(&json!({"log.loginResponse": {"log.return": "x"}})),
            Some(Dialect::Prefixed)
        );
        assert_eq!(
            Dialect::detect(&json!({"loginResponse": {"return": "x"}})),
            Some(Dialect::Plain)
        );
        assert_eq!(Dialect::detect(&json!({"other": 1})), None);
    }

    #[test]
    fn envelopes_unwrap_in_both_dialects_and_empty_means_none() {
        let a = json!({"cas.findAllIdsResponse": {"cas.return": ["a", "b"]}});
        assert_eq!(unwrap_answer("findAllIds", a), Ok(Some(json!(["a", "b"]))));
        let a = json!({"findAllIdsResponse": {"return": "a"}});
        assert_eq!(unwrap_answer("findAllIds", a), Ok(Some(json!("a"))));
        for empty in [
            json!({"sev.getSecurityEventsResponse": ""}),
            json!({"sev.getSecurityEventsResponse": {}}),
            json!({"sev.getSecurityEventsResponse": {"sev.return": null}}),
            json!({}),
            Value::Null,
        ] {
            assert_eq!(
                unwrap_answer("getSecurityEvents", empty.clone()),
                Ok(None),
                "{empty}"
            );
        }
        assert!(unwrap_answer("findAllIds", json!({"somethingElse": 1})).is_err());
    }

    #[test]
    fn repair_escapes_only_invalid_backslashes() {
        let bad = r#"{"m":"C:\Users\x \\srv\share \"q\" \u00e9 \n"}"#;
        assert!(serde_json::from_str::<Value>(bad).is_err());
        let v = parse_json(bad).unwrap();
        assert_eq!(v["m"], json!("C:\\Users\\x \\srv\\share \"q\" é \n"));
        assert_eq!(repair_json(r#"{"ok":"a\\b"}"#), None);
        // Backslashes outside strings are not ours to fix.
        assert!(parse_json(r#"{"a":1}\"#).is_err());
    }

    #[test]
    fn html_detection_and_exception_extraction() {
        let page = "<!doctype html><html><body><p><b>Message</b> com.x.InvalidResourceIDException: Invalid resource ID: [bogus] for Case</p><p><b>Description</b> The server</p></body></html>";
        assert!(is_html(None, page));
        assert!(is_html(Some("text/html;charset=utf-8"), "oops"));
        assert!(!is_html(Some("application/json"), "{}"));
        assert_eq!(
            java_exception(page).as_deref(),
            Some("com.x.InvalidResourceIDException: Invalid resource ID: [bogus] for Case")
        );
        assert_eq!(java_exception("<html><body>Not Found</body></html>"), None);
    }
}
