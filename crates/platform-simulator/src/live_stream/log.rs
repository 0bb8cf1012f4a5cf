//! The event log: a Redis stream as the platform keeps it (`<ms>-<seq>` ids, strictly
//! increasing, trimmed at a maximum length, read strictly after an id).

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::Value;

/// A stream id `<ms>-<seq>`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventId {
    pub ms: u64,
    pub seq: u64,
}

impl EventId {
    pub const ZERO: EventId = EventId { ms: 0, seq: 0 };

    pub fn new(ms: u64, seq: u64) -> Self {
        EventId { ms, seq }
    }

    /// `<a>-<b>` with both parts decimal (the platform's `/^\d+-\d+$/`).
    pub fn parse(s: &str) -> Option<Self> {
        let (a, b) = s.split_once('-')?;
        if a.is_empty() || b.is_empty() || !a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()) {
            return None;
        }
        Some(EventId {
            ms: a.parse().ok()?,
            seq: b.parse().ok()?,
        })
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// The kind of an object event (the inner `type` and, unless a filter changes it, the SSE
/// topic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Create,
    Update,
    Delete,
    Merge,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::Update => "update",
            Kind::Delete => "delete",
            Kind::Merge => "merge",
        }
    }
}

/// What one log entry carries.
#[derive(Debug, Clone)]
pub(crate) enum Payload {
    /// An event built as the platform builds it; `after` (and `before` for an update, the
    /// object with the reverse patch applied) decide the visibility per connection.
    Object {
        kind: Kind,
        json: Arc<str>,
        after: Arc<Value>,
        before: Option<Arc<Value>>,
        /// Stix ids of the references published first (`init-dependencies`).
        deps: Arc<[String]>,
    },
    /// Sent as is, unfiltered: a fault or a topic the platform does not have.
    Raw { topic: String, data: Arc<str> },
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub id: EventId,
    pub payload: Payload,
}

#[derive(Debug, Default)]
pub(crate) struct EventLog {
    entries: VecDeque<Entry>,
    /// `XADD MAXLEN`: `None` keeps everything (`redis:trimming = 0`).
    pub max_len: Option<usize>,
    /// The last id generated (kept when trimming empties the log).
    last: EventId,
    /// The highest synthetic heartbeat id handed out: new ids are above it, as on a platform
    /// whose Redis and Node clocks agree (no event is skipped by a saved heartbeat id).
    floor: EventId,
}

impl EventLog {
    /// The next id at `now_ms`: `<ms>-0`, or the last ms with the next sequence number when
    /// the clock did not move (or went back).
    fn next_id(&self, now_ms: u64) -> EventId {
        let base = self.last.max(self.floor);
        if now_ms > base.ms {
            EventId::new(now_ms, 0)
        } else {
            EventId::new(base.ms, base.seq + 1)
        }
    }

    pub fn append(&mut self, now_ms: u64, payload: Payload) -> EventId {
        let id = self.next_id(now_ms);
        self.last = id;
        self.entries.push_back(Entry { id, payload });
        if let Some(max) = self.max_len {
            self.trim_to(max);
        }
        id
    }

    /// Keeps the newest `keep` entries.
    pub fn trim_to(&mut self, keep: usize) {
        while self.entries.len() > keep {
            self.entries.pop_front();
        }
    }

    /// Drops every entry with an id at or before `id`.
    pub fn trim_through(&mut self, id: EventId) {
        while self.entries.front().is_some_and(|e| e.id <= id) {
            self.entries.pop_front();
        }
    }

    pub fn note_synthetic(&mut self, id: EventId) {
        self.floor = self.floor.max(id);
    }

    /// Up to `max` entries strictly after `after` (`XREAD COUNT max STREAMS s <after>`): an id
    /// older than the oldest kept entry silently continues from the oldest.
    pub fn read_after(&self, after: EventId, max: usize) -> Vec<Entry> {
        let start = self.entries.partition_point(|e| e.id <= after);
        self.entries.range(start..).take(max).cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn first_id(&self) -> Option<EventId> {
        self.entries.front().map(|e| e.id)
    }

    pub fn last_id(&self) -> Option<EventId> {
        self.entries.back().map(|e| e.id)
    }

    /// The last id ever generated (`0-0` before the first event).
    pub fn last_generated(&self) -> EventId {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> Payload {
        Payload::Raw {
            topic: "x".into(),
            data: "{}".into(),
        }
    }

    #[test]
    fn ids_increase_within_a_millisecond_and_when_the_clock_goes_back() {
        let mut log = EventLog::default();
        assert_eq!(log.append(5, raw()), EventId::new(5, 0));
        assert_eq!(log.append(5, raw()), EventId::new(5, 1));
        assert_eq!(log.append(3, raw()), EventId::new(5, 2));
        assert_eq!(log.append(9, raw()), EventId::new(9, 0));
        log.note_synthetic(EventId::new(12, 0));
        assert_eq!(log.append(12, raw()), EventId::new(12, 1));
    }

    #[test]
    fn read_is_exclusive_and_trimming_continues_from_the_oldest() {
        let mut log = EventLog {
            max_len: Some(3),
            ..EventLog::default()
        };
        for ms in 1..=5 {
            log.append(ms, raw());
        }
        assert_eq!(log.first_id(), Some(EventId::new(3, 0)));
        let ids: Vec<_> = log
            .read_after(EventId::new(3, 0), 10)
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, vec![EventId::new(4, 0), EventId::new(5, 0)]);
        let ids: Vec<_> = log
            .read_after(EventId::ZERO, 10)
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids.len(), 3);
        assert_eq!(EventId::parse("12-3"), Some(EventId::new(12, 3)));
        assert_eq!(EventId::parse("12-"), None);
        assert_eq!(EventId::parse("+1-2"), None);
    }
}
