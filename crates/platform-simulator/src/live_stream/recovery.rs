//! Recovery (`recover` > `from`): the current objects matching the stream's filter whose
//! `updated_at` is in (from, recover], sent first as `create` events with
//! `origin.referer = init-create` and ids built from `updated_at`, oldest first (reference
//! 2.5; the platform lists them from Elasticsearch, paginated, so objects changed during the
//! listing show their state when their page is read, as here).

use std::collections::HashMap;

use super::StreamFilter;
use super::log::EventId;
use super::objects::IndicatorSpec;

/// The keys to recover, in `updated_at` order, each with its event id.
pub(crate) fn plan(
    store: &HashMap<String, IndicatorSpec>,
    filter: &StreamFilter,
    from_ms: u64,
    recover_ms: u64,
    with_inferences: bool,
) -> Vec<(EventId, String)> {
    let mut keys: Vec<(i64, &str)> = store
        .values()
        .filter(|s| {
            let u = s.updated_ms.max(0) as u64;
            u > from_ms && u <= recover_ms && (with_inferences || !s.is_inferred)
        })
        .filter(|s| filter.matches_spec(s))
        .map(|s| (s.updated_ms, s.internal_id.as_str()))
        .collect();
    keys.sort_unstable();
    let mut out = Vec::with_capacity(keys.len());
    let mut prev: Option<EventId> = None;
    for (ms, key) in keys {
        let ms = ms.max(0) as u64;
        let id = match prev {
            Some(p) if p.ms == ms => EventId::new(ms, p.seq + 1),
            _ => EventId::new(ms, 0),
        };
        prev = Some(id);
        out.push((id, key.to_owned()));
    }
    out
}
