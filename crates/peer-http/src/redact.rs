//! Keeping secrets out of text that a peer wrote.
//!
//! A hostile or merely broken peer (a proxy's error page, a platform that echoes the request)
//! may send a secret back in any form: as is, upper-cased, %-encoded, HTML-entity-encoded or in
//! base64. Replacing the exact text is not enough, so text that echoes a secret in any of these
//! forms is withheld whole, and what is kept is short and free of control characters.

use base64::Engine;

/// The longest peer message kept, in characters.
pub(crate) const MESSAGE_LEN: usize = 200;

/// Shorter secrets are only replaced where they appear as is: looking for their encoded forms
/// would flag ordinary words.
const MIN_SECRET_LEN: usize = 4;

/// What replaces a message that echoed a secret.
pub(crate) const WITHHELD: &str = "[message withheld: it echoed a secret]";

/// Does `text` carry one of `secrets`, as is, in another case, %-encoded, HTML-entity-encoded,
/// or in base64 (standard or URL-safe, at any alignment)?
pub(crate) fn echoes_secret(text: &str, secrets: &[&str]) -> bool {
    let secrets: Vec<String> = secrets
        .iter()
        .filter(|s| s.len() >= MIN_SECRET_LEN)
        .map(|s| s.to_lowercase())
        .collect();
    if secrets.is_empty() {
        return false;
    }
    let pct = percent_decode(text);
    let views = [
        text.to_owned(),
        html_decode(text),
        html_decode(&pct),
        percent_decode(&html_decode(text)),
        pct,
    ];
    let views: Vec<String> = views.iter().map(|v| v.to_lowercase()).collect();
    if secrets
        .iter()
        .any(|s| views.iter().any(|v| v.contains(s.as_str())))
    {
        return true;
    }
    // Base64 is case-sensitive: decode every run of its alphabet, at each alignment.
    base64_runs(text).any(|decoded| {
        let decoded = String::from_utf8_lossy(&decoded).to_lowercase();
        secrets.iter().any(|s| decoded.contains(s.as_str()))
    })
}

/// `text` with each secret replaced where it appears as is; the whole text withheld when a
/// secret still shows in another form.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let replaced = secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_owned(), |acc, s| acc.replace(s, "[redacted]"));
    if echoes_secret(&replaced, secrets) {
        WITHHELD.to_owned()
    } else {
        replaced
    }
}

/// What may be shown of a message a peer wrote: control characters replaced by spaces, at most
/// [`MESSAGE_LEN`] characters, secrets redacted (or the whole message withheld).
pub fn peer_message(text: &str, secrets: &[&str]) -> String {
    // Judge the whole text: a cut could leave half an encoded secret that no longer matches.
    if echoes_secret(text, secrets) {
        return WITHHELD.to_owned();
    }
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let clean = clean.trim();
    let end = clean
        .char_indices()
        .nth(MESSAGE_LEN)
        .map_or(clean.len(), |(i, _)| i);
    let mut out = redact(&clean[..end], secrets);
    if end < clean.len() {
        out.push_str("...");
    }
    out
}

/// `%XX` sequences decoded (and `+` as a space, as in a form); invalid ones kept.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `&#NN;`, `&#xHH;` and the XML named entities decoded; anything else kept.
fn html_decode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').filter(|&end| end <= 12).and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let num = entity.strip_prefix('#')?;
                    let n = match num.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => num.parse().ok()?,
                    };
                    char::from_u32(n)
                }
            }?;
            Some((c, end + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Every run of base64 characters (8 or more) decoded, at each of the four alignments, so a
/// secret encoded inside a longer base64 text is found too.
fn base64_runs(text: &str) -> impl Iterator<Item = Vec<u8>> + '_ {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    text.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '-' | '_')))
        .filter(|run| run.len() >= 8)
        .flat_map(move |run| {
            let run: String = run
                .chars()
                .map(|c| match c {
                    '-' => '+',
                    '_' => '/',
                    c => c,
                })
                .collect();
            (0..4)
                .filter_map(|skip| {
                    let part = &run[skip..];
                    // A final group of 2 or 3 characters decodes (unpadded); of 1 it cannot.
                    let usable = part.len() - usize::from(part.len() % 4 == 1);
                    engine.decode(&part[..usable]).ok()
                })
                .collect::<Vec<_>>()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    const SECRET: &str = "s3cr3t-Tok3n/value";

    #[test]
    fn a_secret_as_is_is_replaced_and_empty_ones_ignored() {
        assert_eq!(
            redact("token ABC expired", &["ABC", ""]),
            "token [redacted] expired"
        );
    }

    #[test]
    fn every_form_of_a_secret_is_recognised() {
        let pct: String = SECRET.bytes().map(|b| format!("%{b:02X}")).collect();
        let dec: String = SECRET.chars().map(|c| format!("&#{};", c as u32)).collect();
        let hex: String = SECRET
            .chars()
            .map(|c| format!("&#x{:x};", c as u32))
            .collect();
        let forms = [
            format!("bad token {SECRET}"),
            format!("BAD TOKEN {}", SECRET.to_uppercase()),
            format!("token={pct}"),
            format!("<p>{dec}</p>"),
            format!("<p>{hex}</p>"),
            format!("auth: {}", STANDARD.encode(format!("Bearer {SECRET}"))),
            format!("x{}", URL_SAFE_NO_PAD.encode(format!("ab{SECRET}"))),
        ];
        for f in &forms {
            assert!(echoes_secret(f, &[SECRET]), "{f}");
            assert_eq!(peer_message(f, &[SECRET]), WITHHELD, "{f}");
        }
        assert!(!echoes_secret("Access denied for user admin", &[SECRET]));
        assert_eq!(
            peer_message("Access\ndenied\x1b[2J", &[SECRET]),
            "Access denied [2J"
        );
    }

    #[test]
    fn short_messages_are_kept_and_long_ones_cut() {
        let long = "x".repeat(1000);
        let m = peer_message(&long, &[]);
        assert_eq!(m.len(), MESSAGE_LEN + 3);
        assert_eq!(
            redact("token ABC expired", &["ABC", ""]),
            "token [redacted] expired"
        );
    }

    #[test]
    fn decoders_leave_odd_input_alone() {
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(html_decode("a & b &#x41; &bogus;"), "a & b A &bogus;");
    }
}
