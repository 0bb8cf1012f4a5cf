//! Fault injection: the gate in front of every ESM call (429, random 503) and the corrupters of
//! data answers (HTML with 200, a cut body, unescaped backslashes).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::pages::{html, json_ok, page, tomcat_page};
use super::{Faults, Rng, Shared, lock};

/// Fault bookkeeping; one lock so the sequence numbers and the 503 draws stay consistent.
pub(super) struct Gate {
    rng: Rng,
    requests: u64,
    data_answers: u64,
    corruptible_answers: u64,
}

impl Gate {
    pub(super) fn new(seed: u64) -> Self {
        Gate {
            rng: Rng::new(seed ^ 0xFA17_5EED),
            requests: 0,
            data_answers: 0,
            corruptible_answers: 0,
        }
    }
}

impl Shared {
    /// Rate limiting and random unavailability, as a proxy or a loaded manager produces them.
    pub(super) fn gate(&self, f: &Faults) -> Option<Response> {
        let mut g = lock(&self.gate);
        g.requests += 1;
        if let Some(n) = f.rate_limit_every.filter(|n| *n > 0) {
            if g.requests % n == 0 {
                drop(g);
                self.bump("fault.429");
                let mut resp = page(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
                if let Ok(v) = HeaderValue::from_str(&f.retry_after_secs.to_string()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
                return Some(resp);
            }
        }
        if f.error_503_ratio > 0.0 && g.rng.unit() < f.error_503_ratio {
            drop(g);
            self.bump("fault.503");
            return Some(page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service temporarily unavailable",
            ));
        }
        None
    }

    /// Sends a data answer, unless a fault knob replaces it.
    pub(super) fn finish_data(&self, f: &Faults, body: Vec<u8>) -> Response {
        let mut g = lock(&self.gate);
        g.data_answers += 1;
        if let Some(n) = f.html_200_every.filter(|n| *n > 0) {
            if g.data_answers % n == 0 {
                drop(g);
                self.bump("fault.html200");
                let body = tomcat_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "java.lang.IllegalStateException: Service temporarily unavailable",
                );
                return html(StatusCode::OK, body);
            }
        }
        if let Some(n) = f.truncate_every.filter(|n| *n > 0)
            && g.data_answers % n == 0
        {
            drop(g);
            self.bump("fault.truncated");
            let mut cut = body;
            cut.truncate(cut.len() / 2);
            return json_ok(cut);
        }
        if let Some(n) = f.malformed_every.filter(|n| *n > 0) {
            if let Some(bad) = unescape_backslashes(&body) {
                g.corruptible_answers += 1;
                if g.corruptible_answers % n == 0 {
                    drop(g);
                    self.bump("fault.malformed");
                    return json_ok(bad);
                }
            }
        }
        json_ok(body)
    }
}

/// Un-escapes each escaped backslash whose next character would not start a JSON escape, as ESM
/// does with Windows paths; `None` when there is none. Escaping every `\` that does not start a
/// valid escape restores the input exactly.
pub(super) fn unescape_backslashes(json: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(json.len());
    let mut in_string = false;
    let mut changed = false;
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        if in_string && b == b'\\' && i + 1 < json.len() {
            let next = json[i + 1];
            let after = json.get(i + 2).copied();
            if next == b'\\' && after.is_some_and(|a| !b"\"\\/bfnrtu".contains(&a)) {
                out.push(b'\\');
                changed = true;
            } else {
                out.extend_from_slice(&[b, next]);
            }
            i += 2;
            continue;
        }
        if b == b'"' {
            in_string = !in_string;
        }
        out.push(b);
        i += 1;
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The repair every ESM integration applies (reference: "escape a `\` that does not start a
    /// valid JSON escape"), written here independently of the corrupter.
    fn repair(bad: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < bad.len() {
            if bad[i] == b'\\' {
                match bad.get(i + 1) {
                    Some(c) if b"\"\\/bfnrtu".contains(c) => {
                        out.extend_from_slice(&[b'\\', *c]);
                        i += 2;
                        continue;
                    }
                    _ => out.extend_from_slice(b"\\\\"),
                }
            } else {
                out.push(bad[i]);
            }
            i += 1;
        }
        out
    }

    #[test]
    fn corrupted_json_is_invalid_and_repairs_to_the_original() {
        let original = json!({"m": "copy C:\\Users\\bob\\x.txt \\\\fileserver\\share \\\\\\Q end\\", "n": "\\\"q\\u0041"}).to_string();
        let bad = unescape_backslashes(original.as_bytes()).unwrap_or_default();
        assert!(serde_json::from_slice::<Value>(&bad).is_err());
        assert_eq!(String::from_utf8_lossy(&repair(&bad)), original);
    }

    #[test]
    fn nothing_to_corrupt_without_backslashes() {
        assert_eq!(unescape_backslashes(br#"{"a":"b","c":[1,2]}"#), None);
    }
}
