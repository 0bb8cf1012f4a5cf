//! What both HTTP clients (ESM, platform) share: a bounded body read, and TLS failures
//! explained in terms of the settings that fix them.

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// The body is (or announced to be) larger than the limit; reading stopped there.
    TooLarge,
    /// The connection failed while reading.
    Transport(reqwest::Error),
}

/// `value` as JSON, in a buffer of exactly its size. A ping carries the whole state (1.6 MB at
/// 100,000 cases); written into a growing buffer it would take up to twice that, at every
/// page. Measuring first costs a second serialization, which is cheap next to the request.
pub fn json_body<T: serde::Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value)?;
    let mut out = Vec::with_capacity(count.0);
    serde_json::to_writer(&mut out, value)?;
    Ok(out)
}

/// Reads the body chunk by chunk, stopping as soon as it would exceed `limit` bytes, so a
/// hostile or broken peer cannot make the process hold more than `limit` bytes of it. The
/// text is decoded with the charset the `Content-Type` names (UTF-8 when none, as reqwest's
/// `text()` does).
pub async fn read_limited(mut resp: reqwest::Response, limit: u64) -> Result<String, BodyError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge);
    }
    let charset = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(charset_of)
        .map(str::to_owned);
    // Capacity from the announced length, never beyond 1 MiB up front: the announcement is
    // the peer's word.
    let announced = resp.content_length().unwrap_or(0).min(1 << 20);
    let mut body = Vec::with_capacity(usize::try_from(announced).unwrap_or(0));
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    let encoding = charset
        .as_deref()
        .and_then(|c| encoding_rs::Encoding::for_label(c.as_bytes()))
        .unwrap_or(encoding_rs::UTF_8);
    // Valid UTF-8 without a BOM (nearly every answer) becomes the string without a copy: a
    // state echoed back can be megabytes.
    if encoding == encoding_rs::UTF_8 && !body.starts_with(b"\xEF\xBB\xBF") {
        return Ok(match String::from_utf8(body) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        });
    }
    let (text, _, _) = encoding.decode(&body);
    Ok(text.into_owned())
}

fn charset_of(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"'))
    })
}

/// Bytes in a MiB, the unit of the size settings.
pub const MIB: u64 = 1024 * 1024;

/// A hint naming the setting that fixes a certificate failure, when `error_text` (a transport
/// error's text) is one; empty otherwise. `ca_setting` is the setting that adds a trusted CA,
/// when the client has one; `verify_setting` turns verification off.
pub fn tls_hint(error_text: &str, ca_setting: Option<&str>, verify_setting: &str) -> String {
    const MARKERS: &[&str] = &[
        "UnknownIssuer",
        "CaUsedAsEndEntity",
        "NotValidForName",
        "Expired",
        "NotValidYet",
        "invalid peer certificate",
        "certificate",
    ];
    if error_text.contains("CaUsedAsEndEntity") {
        // Trusting the CA cannot help here: the certificate itself is the wrong kind, which
        // is what a server given its self-made CA's certificate (instead of one issued by
        // that CA) presents.
        format!(
            " (the server presents a CA certificate as its own, which no trusted CA can make \
             valid: give the server a certificate issued by that CA, or set {verify_setting}=false)"
        )
    } else if MARKERS.iter().any(|m| error_text.contains(m)) {
        match ca_setting {
            Some(ca) => format!(
                " (the server's TLS certificate was refused: set {ca} to the CA that signed it, \
                 or {verify_setting}=false)"
            ),
            None => format!(
                " (the server's TLS certificate was refused: set {verify_setting}=false if it \
                 cannot be verified)"
            ),
        }
    } else {
        String::new()
    }
}

/// A reqwest error as text safe for a log line or an error message: the URL (which may carry a
/// query string or credentials) removed, then every cause in the chain, since the useful part
/// ("connection refused", "invalid peer certificate") sits in the innermost layers.
pub fn reqwest_error_text(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charset_is_read_from_the_content_type() {
        assert_eq!(
            charset_of("text/html; charset=ISO-8859-1"),
            Some("ISO-8859-1")
        );
        assert_eq!(charset_of("application/json"), None);
        assert_eq!(charset_of("text/plain;CHARSET=\"utf-8\""), Some("utf-8"));
    }

    #[test]
    fn certificate_failures_get_a_hint() {
        let h = tls_hint(
            "error sending request: invalid peer certificate: UnknownIssuer",
            Some("CA_X"),
            "VERIFY_X",
        );
        assert!(
            h.contains("set CA_X") && h.contains("VERIFY_X=false"),
            "{h}"
        );
        let h = tls_hint("invalid peer certificate: UnknownIssuer", None, "VERIFY_X");
        assert!(h.contains("set VERIFY_X=false"), "{h}");
        let h = tls_hint(
            "invalid peer certificate: CaUsedAsEndEntity",
            Some("CA_X"),
            "VERIFY_X",
        );
        assert!(
            h.contains("CA certificate as its own") && !h.contains("CA_X"),
            "{h}"
        );
        assert_eq!(tls_hint("connection refused", Some("CA_X"), "VERIFY_X"), "");
    }

    #[test]
    fn the_body_is_the_json_in_a_buffer_of_exactly_its_size() {
        let state = "x".repeat(100_000);
        let value =
            serde_json::json!({"query": "mutation", "variables": {"state": state, "n": [1, 2]}});
        let body = super::json_body(&value).unwrap();
        assert_eq!(body, serde_json::to_vec(&value).unwrap());
        assert_eq!(body.capacity(), body.len());
    }
}
