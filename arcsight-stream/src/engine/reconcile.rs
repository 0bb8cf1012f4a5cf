//! Reconciliation: the list as ESM holds it (`getEntries`) against what the connector wants.
//!
//! # Ownership
//!
//! An entry is the connector's when its value is one the connector manages: a value of the
//! ledger (a live indicator of the stream that passes the policy carries it), or a value of the
//! ledger the connector had before a full resynchronisation (the ledger file's, or the one in
//! memory when a retention gap or an operator's reset forced the resync), until that resync
//! completes, or a value sent to ESM since the ledger file was last written (its journal,
//! `<file>.owned`, read at start), until the next reconciliation. Every other entry is foreign: added by an administrator, a rule, or another feed,
//! and the connector never removes it, even when the stream never mentioned its value.
//!
//! A reconciliation therefore adds every wanted value missing from the list (removed by an
//! administrator, evicted at capacity, expired by the list's time to live) and removes the
//! entries whose value the connector managed and no longer wants. It runs once the stream has
//! caught up at start (the first heartbeat), at the end of each full resync, and every
//! `reconcile_period`.

use std::collections::HashSet;

use stream_core::ledger::Ledger;

/// What to write so the list holds exactly the wanted values, foreign entries aside.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Repairs {
    /// Wanted, not in the list.
    pub missing: Vec<String>,
    /// In the list, managed before, no longer wanted.
    pub stale: Vec<String>,
    /// In the list, never managed: left alone (counted for the log line).
    pub foreign: usize,
}

/// `present`: the value column of the list; `prior`: values managed before a resync.
pub(crate) fn diff(ledger: &Ledger, present: &[String], prior: &HashSet<String>) -> Repairs {
    let mut r = Repairs::default();
    let in_list: HashSet<&str> = present.iter().map(String::as_str).collect();
    for v in ledger.desired() {
        if !in_list.contains(v) {
            r.missing.push(v.to_owned());
        }
    }
    for v in in_list {
        if ledger.carriers(v) > 0 {
            continue;
        }
        if prior.contains(v) {
            r.stale.push(v.to_owned());
        } else {
            r.foreign += 1;
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use stream_core::event::decode;
    use stream_core::policy::Policy;

    #[test]
    fn missing_are_wanted_stale_were_ours_the_rest_is_foreign() {
        let mut l = Ledger::new(Policy::default());
        for (id, ip) in [("a", "1.1.1.1"), ("b", "2.2.2.2")] {
            let data = format!(
                r#"{{"data": {{"id": "indicator--{id}", "type": "indicator", "pattern_type": "stix",
                "pattern": "[ipv4-addr:value = '{ip}']"}}}}"#
            );
            l.apply(&decode("create", &data).unwrap().unwrap(), 0);
        }
        let present: Vec<String> = ["2.2.2.2", "3.3.3.3", "9.9.9.9"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let prior: HashSet<String> = ["3.3.3.3".to_string(), "1.1.1.1".to_string()].into();
        let r = diff(&l, &present, &prior);
        assert_eq!(r.missing, ["1.1.1.1"]);
        assert_eq!(r.stale, ["3.3.3.3"]);
        assert_eq!(r.foreign, 1);
    }
}
