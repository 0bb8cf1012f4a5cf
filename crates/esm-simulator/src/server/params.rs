//! Request parameters in every form ESM accepts, and the redacted request log line.

use std::collections::HashMap;

use axum::http::{HeaderMap, Method, header};
use axum::response::Response;
use serde_json::Value;

use super::pages::{escape_html, server_error};

/// Request parameters from the query, a form body or a JSON body, with the namespace prefixes
/// (`cas.`, `log.`, `sev.`) removed so both dialects read the same.
#[derive(Debug, Default)]
pub(super) struct Params(HashMap<String, Vec<String>>);

impl Params {
    pub(super) fn parse(
        query: &[(String, String)],
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Params, Response> {
        let mut p = Params::default();
        for (k, v) in query {
            p.push(k, v.clone());
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let trimmed = body.trim_ascii_start();
        if trimmed.is_empty() {
            return Ok(p);
        }
        if content_type.contains("json") || trimmed.starts_with(b"{") {
            let value: Value = serde_json::from_slice(body).map_err(|e| {
                server_error(&format!(
                    "com.fasterxml.jackson.core.JsonParseException: {}",
                    json_error_kind(&e)
                ))
            })?;
            p.collect_json(&value);
        } else {
            for (k, v) in url::form_urlencoded::parse(body) {
                p.push(&k, v.into_owned());
            }
        }
        Ok(p)
    }

    fn push(&mut self, key: &str, value: String) {
        let key = key.rsplit('.').next().unwrap_or(key);
        self.0.entry(key.to_string()).or_default().push(value);
    }

    /// Flattens the request object: the wrapper (`{"cas.getResourceById": {...}}`) and the
    /// parameters inside it land in one map; lists become repeated values.
    fn collect_json(&mut self, v: &Value) {
        if let Value::Object(map) = v {
            for (k, v) in map {
                match v {
                    Value::Object(_) => self.collect_json(v),
                    Value::Array(items) => items
                        .iter()
                        .filter_map(scalar)
                        .for_each(|s| self.push(k, s)),
                    other => {
                        if let Some(s) = scalar(other) {
                            self.push(k, s);
                        }
                    }
                }
            }
        }
    }

    pub(super) fn first(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.first()).map(String::as_str)
    }

    pub(super) fn all(&self, key: &str) -> &[String] {
        self.0.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    pub(super) fn required(&self, key: &str) -> Result<&str, Response> {
        self.first(key).ok_or_else(|| {
            server_error(&format!(
                "java.lang.IllegalArgumentException: {key} is required"
            ))
        })
    }

    pub(super) fn wants_json(&self, headers: &HeaderMap) -> bool {
        self.first("alt") == Some("json")
            || headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("application/json"))
    }
}

/// Names a JSON error without echoing the body (which may hold a password).
pub(super) fn json_error_kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Eof => "Unexpected end-of-input",
        _ => "Unexpected character",
    }
}

pub(super) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(super) fn parse_long(s: &str) -> Result<i64, Response> {
    s.trim().parse().map_err(|_| {
        server_error(&format!(
            "java.lang.NumberFormatException: For input string: \"{}\"",
            escape_html(s)
        ))
    })
}

pub(super) fn is_secret_key(key: &str) -> bool {
    let key = key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase();
    key == "password" || key == "authtoken"
}

pub(super) fn log_line(method: &Method, path: &str, query: &[(String, String)]) -> String {
    if query.is_empty() {
        return format!("{method} {path}");
    }
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in query {
        q.append_pair(
            k,
            if is_secret_key(k) {
                "REDACTED"
            } else {
                v.as_str()
            },
        );
    }
    format!("{method} {path}?{}", q.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_redact_secrets_in_any_dialect() {
        let q = vec![
            ("login".to_string(), "admin".to_string()),
            ("password".to_string(), "hunter2".to_string()),
            ("cas.authToken".to_string(), "tok".to_string()),
        ];
        let line = log_line(&Method::GET, "/p", &q);
        assert!(
            !line.contains("hunter2") && !line.contains("tok&") && !line.ends_with("tok"),
            "{line}"
        );
        assert!(line.contains("login=admin"), "{line}");
    }
}
