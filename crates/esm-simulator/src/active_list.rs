//! The Active List data model: rows of string fields, keyed by the first field, with capacity
//! (random eviction, as ESM 7.8's Console User Guide documents) and a time to live.
//!
//! Choices where real ESM behaviour is not documented (stream-arcsight.md 3.6):
//! - the key is the first field; adding a row whose key exists replaces it (no duplicate) and
//!   restarts its TTL;
//! - keys compare exactly (case-sensitive): no source says ESM folds case;
//! - `deleteEntries` removes by key; the other fields of the sent row are ignored.

use std::collections::HashMap;
use std::time::Duration;

use crate::data::Rng;

/// An Active List to serve, set in [`crate::SimConfig::active_lists`] or created at run time.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveListConfig {
    /// The resource id clients send as `resourceId`.
    pub id: String,
    pub name: String,
    /// `fieldNames`, in order; the first is the key.
    pub fields: Vec<String>,
    /// Most entries kept; a new key beyond it evicts a random entry (ESM's default: 10,000).
    pub capacity: usize,
    /// Entries expire this long after their last add; `None`: never.
    pub ttl: Option<Duration>,
}

impl ActiveListConfig {
    /// A list with ESM's documented default capacity (10,000) and no TTL.
    pub fn new(id: &str, fields: &[&str]) -> Self {
        ActiveListConfig {
            id: id.to_owned(),
            name: format!("Simulated list {id}"),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            capacity: 10_000,
            ttl: None,
        }
    }
}

#[derive(Debug, Clone)]
struct Row {
    fields: Vec<String>,
    expires_ms: Option<i64>,
}

/// Why a write was refused (the server turns it into ESM's error page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WriteError {
    UnknownColumn(String),
    NoKeyColumn,
    RowWidth,
}

#[derive(Debug)]
pub(crate) struct ActiveList {
    pub(crate) cfg: ActiveListConfig,
    rows: Vec<Row>,
    index: HashMap<String, usize>,
    rng: Rng,
    /// Entries removed at capacity so far.
    pub(crate) evicted: u64,
}

impl ActiveList {
    pub(crate) fn new(cfg: ActiveListConfig, seed: u64) -> Self {
        ActiveList {
            cfg,
            rows: Vec::new(),
            index: HashMap::new(),
            rng: Rng::new(seed ^ 0xAC71_5E57),
            evicted: 0,
        }
    }

    /// Drops the entries whose TTL has passed at `now_ms`.
    pub(crate) fn expire(&mut self, now_ms: i64) {
        let mut i = 0;
        while i < self.rows.len() {
            if self.rows[i].expires_ms.is_some_and(|t| t <= now_ms) {
                self.remove_at(i);
            } else {
                i += 1;
            }
        }
    }

    fn remove_at(&mut self, i: usize) {
        let row = self.rows.swap_remove(i);
        self.index.remove(&row.fields[0]);
        if let Some(moved) = self.rows.get(i) {
            self.index.insert(moved.fields[0].clone(), i);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Every row, in the list's field order, sorted by key (a stable answer for tests).
    pub(crate) fn rows(&self) -> Vec<Vec<String>> {
        let mut rows: Vec<Vec<String>> = self.rows.iter().map(|r| r.fields.clone()).collect();
        rows.sort();
        rows
    }

    /// Maps rows given in `columns` order onto the list's fields (missing fields are `""`).
    pub(crate) fn align(
        &self,
        columns: &[String],
        rows: &[Vec<String>],
    ) -> Result<Vec<Vec<String>>, WriteError> {
        let mut pos = Vec::with_capacity(columns.len());
        for c in columns {
            let p = self
                .cfg
                .fields
                .iter()
                .position(|f| f == c)
                .ok_or_else(|| WriteError::UnknownColumn(c.clone()))?;
            pos.push(p);
        }
        if !pos.contains(&0) {
            return Err(WriteError::NoKeyColumn);
        }
        rows.iter()
            .map(|r| {
                if r.len() != columns.len() {
                    return Err(WriteError::RowWidth);
                }
                let mut out = vec![String::new(); self.cfg.fields.len()];
                for (v, p) in r.iter().zip(&pos) {
                    out[*p] = v.clone();
                }
                Ok(out)
            })
            .collect()
    }

    /// Adds or replaces rows (full width, list order); evicts a random entry per new key at
    /// capacity.
    pub(crate) fn add(&mut self, rows: Vec<Vec<String>>, now_ms: i64) {
        let expires_ms = self
            .cfg
            .ttl
            .map(|t| now_ms.saturating_add(i64::try_from(t.as_millis()).unwrap_or(i64::MAX)));
        for fields in rows {
            let key = fields[0].clone();
            if let Some(&i) = self.index.get(&key) {
                self.rows[i] = Row { fields, expires_ms };
                continue;
            }
            if self.cfg.capacity == 0 {
                continue;
            }
            if self.rows.len() >= self.cfg.capacity {
                let victim = self.rng.below(self.rows.len() as u64) as usize;
                self.remove_at(victim);
                self.evicted += 1;
            }
            self.index.insert(key, self.rows.len());
            self.rows.push(Row { fields, expires_ms });
        }
    }

    /// Removes the rows with these keys; returns how many existed.
    pub(crate) fn delete(&mut self, keys: &[String]) -> usize {
        let mut n = 0;
        for k in keys {
            if let Some(i) = self.index.get(k).copied() {
                self.remove_at(i);
                n += 1;
            }
        }
        n
    }

    pub(crate) fn clear(&mut self) {
        self.rows.clear();
        self.index.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(k: &str) -> Vec<String> {
        vec![k.to_owned()]
    }

    /// Removal swaps the last row into the hole: every key must still find its own row.
    #[test]
    fn the_index_follows_rows_through_evictions_and_deletes() {
        let mut cfg = ActiveListConfig::new("L", &["value"]);
        cfg.capacity = 4;
        let mut l = ActiveList::new(cfg, 1);
        l.add((0..10).map(|i| row(&i.to_string())).collect(), 0);
        let keys: Vec<String> = l.rows().into_iter().map(|r| r[0].clone()).collect();
        assert_eq!(keys.len(), 4);
        assert_eq!(l.delete(&keys[..2]), 2);
        assert_eq!(l.delete(&keys[..2]), 0);
        for k in &keys[2..] {
            assert_eq!(l.index.get(k).map(|&i| &l.rows[i].fields[0]), Some(k));
        }
    }

    #[test]
    fn expiry_removes_only_rows_past_their_ttl() {
        let mut cfg = ActiveListConfig::new("L", &["value"]);
        cfg.ttl = Some(Duration::from_millis(100));
        let mut l = ActiveList::new(cfg, 1);
        l.add(vec![row("a")], 0);
        l.add(vec![row("b")], 50);
        l.expire(99);
        assert_eq!(l.len(), 2);
        l.expire(100);
        assert_eq!(l.rows(), vec![row("b")]);
    }
}
