//! Incremental Server-Sent Events parser (WHATWG "interpreting an event stream").
//!
//! Written here rather than taken from crates.io: `eventsource-stream` 0.2.3 buffers an
//! event without any size bound, and `sse-stream` 0.3.0 drops comments (we need them to
//! reset the read timeout on heartbeats) and has no bound either. Both are also tied to
//! `futures` streams; this parser is a plain state machine over byte chunks.

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// One thing the stream said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// A dispatched event.
    Event(SseEvent),
    /// A `:` line (heartbeat): proof the peer is alive.
    Comment(String),
    /// A valid `retry:` field, in milliseconds.
    Retry(u64),
    /// An event (or line) longer than the limit: skipped up to the next blank line.
    TooLarge { limit: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` name, `message` when absent.
    pub event: String,
    /// `data:` lines joined with `\n`.
    pub data: String,
    /// The last-event-id buffer at dispatch (kept across events, as the spec says).
    pub id: String,
}

#[derive(Debug)]
pub struct SseParser {
    limit: usize,
    line: Vec<u8>,
    /// Bytes seen in the current line while skipping (nothing buffered).
    skipped_line_len: usize,
    skipping: bool,
    pending_cr: bool,
    bom_pos: Option<usize>,
    data: String,
    event: String,
    event_size: usize,
    last_event_id: String,
}

impl SseParser {
    /// `limit`: the largest event (sum of its line bytes) accepted.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            line: Vec::new(),
            skipped_line_len: 0,
            skipping: false,
            pending_cr: false,
            bom_pos: Some(0),
            data: String::new(),
            event: String::new(),
            event_size: 0,
            last_event_id: String::new(),
        }
    }

    /// Starts a new connection: a partial event is dropped (the spec discards it at EOF),
    /// the last-event-id is kept (it is what the reconnection sends).
    pub fn reset_connection(&mut self) {
        let id = std::mem::take(&mut self.last_event_id);
        *self = Self::new(self.limit);
        self.last_event_id = id;
    }

    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Sets the last-event-id (from the saved position) before the first connection.
    pub fn set_last_event_id(&mut self, id: &str) {
        self.last_event_id = id.to_owned();
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseItem> {
        let mut out = Vec::new();
        for &b in chunk {
            if let Some(i) = self.bom_pos {
                if b == BOM[i] {
                    self.bom_pos = if i + 1 == BOM.len() {
                        None
                    } else {
                        Some(i + 1)
                    };
                    continue;
                }
                self.bom_pos = None;
                // A partial BOM was data after all.
                for &p in &BOM[..i] {
                    self.byte(p, &mut out);
                }
            }
            self.byte(b, &mut out);
        }
        out
    }

    fn byte(&mut self, b: u8, out: &mut Vec<SseItem>) {
        if self.pending_cr {
            self.pending_cr = false;
            if b == b'\n' {
                return; // CRLF, possibly split across chunks.
            }
        }
        match b {
            b'\r' => {
                self.pending_cr = true;
                self.end_line(out);
            }
            b'\n' => self.end_line(out),
            _ if self.skipping => self.skipped_line_len += 1,
            _ => {
                self.line.push(b);
                if self.event_size + self.line.len() > self.limit {
                    out.push(SseItem::TooLarge { limit: self.limit });
                    self.skipping = true;
                    self.skipped_line_len = 1;
                    self.line = Vec::new();
                    self.data = String::new();
                    self.event.clear();
                    self.event_size = 0;
                }
            }
        }
    }

    fn end_line(&mut self, out: &mut Vec<SseItem>) {
        if self.skipping {
            if self.skipped_line_len == 0 {
                self.skipping = false; // the blank line ending the oversized event
            }
            self.skipped_line_len = 0;
            return;
        }
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        let text = String::from_utf8_lossy(&line);
        if let Some(comment) = text.strip_prefix(':') {
            // Not part of the event: keep-alive comments without blank lines must not add
            // up to a spurious TooLarge.
            out.push(SseItem::Comment(comment.to_owned()));
            return;
        }
        self.event_size += line.len();
        let (field, value) = match text.find(':') {
            Some(i) => {
                let v = &text[i + 1..];
                (&text[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&*text, ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => self.last_event_id = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|c| c.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    out.push(SseItem::Retry(ms));
                }
            }
            _ => {}
        }
        // Keep the line's allocation for the next one.
        self.line = line;
        self.line.clear();
    }

    fn dispatch(&mut self, out: &mut Vec<SseItem>) {
        self.event_size = 0;
        let event = std::mem::take(&mut self.event);
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the trailing LF
        out.push(SseItem::Event(SseEvent {
            event: if event.is_empty() {
                "message".to_owned()
            } else {
                event
            },
            data,
            id: self.last_event_id.clone(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ev(event: &str, data: &str, id: &str) -> SseItem {
        SseItem::Event(SseEvent {
            event: event.into(),
            data: data.into(),
            id: id.into(),
        })
    }

    fn all(input: &[u8]) -> Vec<SseItem> {
        SseParser::new(1 << 20).feed(input)
    }

    #[test]
    fn lf_cr_and_crlf_line_ends() {
        for sep in ["\n", "\r", "\r\n"] {
            let s = format!("id: 1-0{sep}event: create{sep}data: {{}}{sep}{sep}");
            assert_eq!(
                all(s.as_bytes()),
                vec![ev("create", "{}", "1-0")],
                "sep {sep:?}"
            );
        }
    }

    #[test]
    fn crlf_split_across_chunks_is_one_line_end() {
        let mut p = SseParser::new(1024);
        let mut out = p.feed(b"data: a\r");
        out.extend(p.feed(b"\ndata: b\r"));
        out.extend(p.feed(b"\n\r"));
        out.extend(p.feed(b"\n"));
        assert_eq!(out, vec![ev("message", "a\nb", "")]);
    }

    #[test]
    fn multi_line_data_joined_and_one_space_stripped() {
        assert_eq!(
            all(b"data:x\ndata:  y\ndata\n\n"),
            vec![ev("message", "x\n y\n", "")]
        );
    }

    #[test]
    fn comments_are_reported() {
        assert_eq!(
            all(b": ping\n:\n"),
            vec![
                SseItem::Comment(" ping".into()),
                SseItem::Comment("".into())
            ]
        );
    }

    #[test]
    fn retry_digits_only() {
        assert_eq!(
            all(b"retry: 2500\nretry: 12a\nretry: -1\nretry:\n"),
            vec![SseItem::Retry(2500)]
        );
    }

    #[test]
    fn id_kept_across_events_and_nul_ignored() {
        let out = all(b"id: 5-0\ndata: a\n\ndata: b\n\nid: 6\0\ndata: c\n\nid\ndata: d\n\n");
        assert_eq!(
            out,
            vec![
                ev("message", "a", "5-0"),
                ev("message", "b", "5-0"),
                ev("message", "c", "5-0"),
                ev("message", "d", "")
            ]
        );
    }

    #[test]
    fn empty_data_does_not_dispatch_and_event_name_resets() {
        assert_eq!(
            all(b"event: heartbeat\n\ndata: x\n\n"),
            vec![ev("message", "x", "")]
        );
        assert_eq!(all(b"id: 1\n\n"), vec![]);
    }

    #[test]
    fn bom_skipped_at_start_only() {
        let mut s = BOM.to_vec();
        s.extend_from_slice(b"data: a\n\n");
        let mut p = SseParser::new(100);
        let mut out = p.feed(&s[..2]);
        out.extend(p.feed(&s[2..]));
        assert_eq!(out, vec![ev("message", "a", "")]);
        // A BOM later is data (here in the field name, so the line is ignored).
        let mut t = b"data: a\n\n".to_vec();
        t.extend_from_slice(&BOM);
        t.extend_from_slice(b"data: b\n\n");
        assert_eq!(all(&t), vec![ev("message", "a", "")]);
    }

    #[test]
    fn oversized_event_reported_skipped_and_parser_resyncs() {
        let mut p = SseParser::new(64);
        let big = format!(
            "id: 9\ndata: {}\ndata: more\n\ndata: ok\n\n",
            "x".repeat(1000)
        );
        let mut out = Vec::new();
        for c in big.as_bytes().chunks(7) {
            out.extend(p.feed(c));
        }
        assert_eq!(
            out,
            vec![SseItem::TooLarge { limit: 64 }, ev("message", "ok", "9")]
        );
        // Nothing of the big line was buffered.
        assert!(
            p.line.capacity() <= 128,
            "line buffer grew to {}",
            p.line.capacity()
        );
    }

    #[test]
    fn limit_counts_the_whole_event_not_one_line() {
        let mut p = SseParser::new(20);
        let out = p.feed(b"data: 0123456789\ndata: 0123456789\n\ndata: ok\n\n");
        assert_eq!(
            out,
            vec![SseItem::TooLarge { limit: 20 }, ev("message", "ok", "")]
        );
    }

    #[test]
    fn comments_do_not_count_towards_the_event_size() {
        let mut p = SseParser::new(20);
        let mut out = Vec::new();
        for _ in 0..100 {
            out.extend(p.feed(b": keep-alive\n"));
        }
        out.extend(p.feed(b"data: ok\n\n"));
        assert_eq!(out.len(), 101);
        assert_eq!(out[100], ev("message", "ok", ""));
    }

    #[test]
    fn reset_connection_drops_partial_event_keeps_id() {
        let mut p = SseParser::new(100);
        p.feed(b"id: 3-0\ndata: a\n\nid: 4-0\ndata: partial");
        p.reset_connection();
        assert_eq!(p.last_event_id(), "4-0");
        assert_eq!(p.feed(b"\n\ndata: b\n\n"), vec![ev("message", "b", "4-0")]);
    }

    proptest! {
        #[test]
        fn never_panics_and_chunking_does_not_matter(input in proptest::collection::vec(any::<u8>(), 0..400), cut in 0usize..400) {
            let whole = SseParser::new(50).feed(&input);
            let cut = cut.min(input.len());
            let mut p = SseParser::new(50);
            let mut parts = p.feed(&input[..cut]);
            parts.extend(p.feed(&input[cut..]));
            prop_assert_eq!(whole, parts);
        }
    }
}
