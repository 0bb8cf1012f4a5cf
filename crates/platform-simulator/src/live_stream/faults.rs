//! Fault knobs (settable at runtime) and the SSE framing they alter.

/// How the simulated stream misbehaves. Every knob is read at each message, so a change
/// applies to open connections as well as new ones.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Lines end with CRLF instead of LF.
    pub crlf: bool,
    /// `data` is sent as several `data:` lines (the JSON pretty-printed, one line each).
    pub multiline_data: bool,
    /// A `retry: <ms>` field after `connected` (the platform sends none).
    pub retry_ms: Option<u64>,
    /// A `: keep-alive` comment before every heartbeat (OpenCTI sends none; SSE allows them).
    pub comments: bool,
    /// The next N data events (any connection) are cut: half of the message is written, then
    /// the TCP connection is dropped.
    pub cut_next_events: usize,
    /// Data events written whole before `cut_next_events` applies (to cut the object after
    /// its dependencies, which share its id).
    pub cut_after: usize,
    /// Every open connection goes silent for good (no data, no heartbeat) and new ones go
    /// silent right after the response headers, while set.
    pub stall: bool,
    /// The next N connections are answered with this HTTP status (empty body), before any
    /// other check, as a proxy or a failing platform would.
    pub refuse_next: Option<(u16, usize)>,
    /// A refusal's body echoes the request line and headers (authorization included), as a
    /// misconfigured proxy's error page does: what a client must never repeat.
    pub echo_request_on_refusal: bool,
}

/// One SSE message, as bytes.
pub(crate) fn frame(f: &Faults, id: Option<&str>, event: &str, data: &str) -> Vec<u8> {
    let nl = if f.crlf { "\r\n" } else { "\n" };
    let mut out = String::with_capacity(data.len() + 64);
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(id);
        out.push_str(nl);
    }
    out.push_str("event: ");
    out.push_str(event);
    out.push_str(nl);
    let pretty;
    let text = if f.multiline_data {
        pretty = serde_json::from_str::<serde_json::Value>(data)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok());
        pretty.as_deref().unwrap_or(data)
    } else {
        data
    };
    // A newline inside data is a new `data:` line (SSE has no other way to carry one).
    for line in text.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push_str(nl);
    }
    out.push_str(nl);
    out.into_bytes()
}

pub(crate) fn line(f: &Faults, text: &str) -> Vec<u8> {
    let nl = if f.crlf { "\r\n" } else { "\n" };
    format!("{text}{nl}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_variants() {
        let plain = Faults::default();
        assert_eq!(
            frame(&plain, Some("1-0"), "create", "{\"a\":1}"),
            b"id: 1-0\nevent: create\ndata: {\"a\":1}\n\n".to_vec()
        );
        let crlf = Faults {
            crlf: true,
            ..Faults::default()
        };
        assert_eq!(
            frame(&crlf, None, "connected", "{}"),
            b"event: connected\r\ndata: {}\r\n\r\n".to_vec()
        );
        let multi = Faults {
            multiline_data: true,
            ..Faults::default()
        };
        let text =
            String::from_utf8(frame(&multi, Some("2-0"), "update", "{\"a\":1,\"b\":2}")).unwrap();
        assert!(text.matches("data: ").count() >= 3, "{text}");
    }
}
