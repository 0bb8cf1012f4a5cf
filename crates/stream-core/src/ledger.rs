//! The ledger: which tracked indicator carries which values, and how many live indicators
//! carry each value. It turns stream events into the list changes to make.
//!
//! Only *contributing* indicators are tracked: an excluded one (revoked, detection off,
//! expired, unsupported pattern…) comes back only through an event, and every event
//! carries the whole object, so nothing has to be kept for it.
//!
//! Memory: an indicator is a 16-byte key (FNV-1a 128 of its key string) and 8 bytes of
//! entry (one value slot id, `valid_until` in seconds); indicators with several values keep
//! the others in a side map; each distinct value lives once in a slot table, indexed by a
//! hash table that stores only the u32 slot id.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};
use thiserror::Error;

use crate::event::{Object, StreamEvent, Topic};
use crate::policy::{self, Exclusion, Policy};

type Key = [u32; 4];
const NONE: u32 = u32::MAX;
const MULTI: u32 = u32::MAX - 1;
const NO_EXPIRY: u32 = u32::MAX;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Change {
    Add(String),
    Remove(String),
}

#[derive(Debug, Clone, Copy)]
struct Tracked {
    val: u32,
    /// `valid_until` in Unix seconds, rounded up; `NO_EXPIRY` when none.
    until: u32,
}

#[derive(Debug)]
struct Slot {
    value: Box<str>,
    /// 0 = free slot.
    refs: u32,
}

/// What `apply` did with an event, for the caller's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub changes: Vec<Change>,
    /// Set when the event's indicator contributes nothing, and why.
    pub excluded: Option<Exclusion>,
}

#[derive(Debug, Error, PartialEq)]
pub enum SnapshotError {
    #[error("ledger snapshot is truncated or corrupt at byte {0}")]
    Corrupt(usize),
    #[error("ledger snapshot has an unknown format")]
    Format,
}

#[derive(Debug)]
pub struct Ledger {
    policy: Policy,
    indicators: HashMap<Key, Tracked>,
    multi: HashMap<Key, Box<[u32]>>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// (until, key); lazily deleted: an entry is live only while the indicator still has it.
    expiry: BinaryHeap<Reverse<(u32, Key)>>,
}

fn key_of(s: &str) -> Key {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for &b in s.as_bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    [
        (h >> 96) as u32,
        (h >> 64) as u32,
        (h >> 32) as u32,
        h as u32,
    ]
}

fn until_secs(ms: Option<i64>) -> u32 {
    match ms {
        None => NO_EXPIRY,
        Some(ms) => (ms.max(0).saturating_add(999) / 1000).min(i64::from(NO_EXPIRY - 1)) as u32,
    }
}

/// Buckets hashbrown allocates for a table of this capacity.
fn buckets(capacity: usize) -> usize {
    match capacity {
        0 => 0,
        c if c < 8 => (c + 1).next_power_of_two(),
        c => (c * 8).div_ceil(7).next_power_of_two(),
    }
}

impl Ledger {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            indicators: HashMap::new(),
            multi: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            expiry: BinaryHeap::new(),
        }
    }

    pub fn tracked(&self) -> usize {
        self.indicators.len()
    }

    /// Applies one stream event at `now` (Unix ms).
    pub fn apply(&mut self, ev: &StreamEvent, now: i64) -> Applied {
        let mut forget: Vec<&str> = ev.merged_sources.iter().map(String::as_str).collect();
        forget.extend(ev.previous_ids.iter().map(String::as_str));
        let (key, verdict) = match &ev.object {
            Object::Other { .. } if forget.is_empty() => {
                return Applied {
                    changes: vec![],
                    excluded: None,
                };
            }
            Object::Other { .. } => (None, None),
            Object::Indicator(ind) => {
                forget.push(ind.key());
                forget.push(&ind.id);
                let verdict = match ev.topic {
                    Topic::Delete => None,
                    _ => Some(policy::evaluate(ind, &self.policy, now)),
                };
                (Some(ind.key()), verdict)
            }
        };
        // Take the old values out first, count the new ones in, then release the old ones:
        // a value kept across the event never drops to zero, so it is neither removed nor
        // re-added.
        let mut old = Vec::new();
        forget.sort_unstable();
        forget.dedup();
        for k in forget {
            self.untrack(key_of(k), &mut old);
        }
        let mut changes = Vec::new();
        let mut excluded = None;
        match verdict {
            Some(Ok((values, until))) => {
                let key = key_of(key.expect("indicator key"));
                let ids: Vec<u32> = values
                    .iter()
                    .map(|e| self.acquire(&e.value, &mut changes))
                    .collect();
                let until = until_secs(until);
                let val = match ids.as_slice() {
                    [] => NONE,
                    [one] => *one,
                    _ => {
                        self.multi.insert(key, ids.into_boxed_slice());
                        MULTI
                    }
                };
                self.indicators.insert(key, Tracked { val, until });
                if until != NO_EXPIRY {
                    self.expiry.push(Reverse((until, key)));
                }
            }
            Some(Err(why)) => excluded = Some(why),
            None => {}
        }
        for id in old {
            self.release(id, &mut changes);
        }
        self.compact_expiry();
        Applied { changes, excluded }
    }

    /// The earliest `valid_until` (Unix ms) of a tracked indicator: the caller wakes then.
    pub fn next_expiry(&mut self) -> Option<i64> {
        while let Some(Reverse((until, key))) = self.expiry.peek().copied() {
            if self.indicators.get(&key).is_some_and(|t| t.until == until) {
                return Some(i64::from(until) * 1000);
            }
            self.expiry.pop();
        }
        None
    }

    /// Removes the indicators whose `valid_until` is at or before `now` (Unix ms).
    pub fn expire(&mut self, now: i64) -> Vec<Change> {
        let mut old = Vec::new();
        while let Some(Reverse((until, key))) = self.expiry.peek().copied() {
            if i64::from(until) * 1000 > now {
                break;
            }
            self.expiry.pop();
            if self.indicators.get(&key).is_some_and(|t| t.until == until) {
                self.untrack(key, &mut old);
            }
        }
        let mut changes = Vec::new();
        for id in old {
            self.release(id, &mut changes);
        }
        changes
    }

    /// Every value that should be in the list.
    pub fn desired(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().filter(|s| s.refs > 0).map(|s| &*s.value)
    }

    /// How many live indicators carry `value`.
    pub fn carriers(&self, value: &str) -> u32 {
        let h = self.hasher.hash_one(value);
        self.index
            .find(h, |&i| &*self.slots[i as usize].value == value)
            .map_or(0, |&i| self.slots[i as usize].refs)
    }

    fn untrack(&mut self, key: Key, old: &mut Vec<u32>) {
        if let Some(t) = self.indicators.remove(&key) {
            match t.val {
                NONE => {}
                MULTI => old.extend(self.multi.remove(&key).into_iter().flatten()),
                v => old.push(v),
            }
        }
    }

    fn acquire(&mut self, value: &str, changes: &mut Vec<Change>) -> u32 {
        let h = self.hasher.hash_one(value);
        let slots = &self.slots;
        if let Some(&i) = self.index.find(h, |&i| &*slots[i as usize].value == value) {
            self.slots[i as usize].refs += 1;
            return i;
        }
        let slot = Slot {
            value: value.into(),
            refs: 1,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index
            .insert_unique(h, i, |&j| hasher.hash_one(&*slots[j as usize].value));
        changes.push(Change::Add(value.to_owned()));
        i
    }

    fn release(&mut self, i: u32, changes: &mut Vec<Change>) {
        let slot = &mut self.slots[i as usize];
        slot.refs -= 1;
        if slot.refs > 0 {
            return;
        }
        let value = std::mem::take(&mut slot.value);
        let h = self.hasher.hash_one(&*value);
        if let Ok(e) = self.index.find_entry(h, |&j| j == i) {
            e.remove();
        }
        self.free.push(i);
        changes.push(Change::Remove(value.into_string()));
    }

    /// Drops stale expiry entries once they outnumber the live ones.
    fn compact_expiry(&mut self) {
        if self.expiry.len() > 2 * self.indicators.len() + 1024 {
            let ind = &self.indicators;
            self.expiry
                .retain(|Reverse((u, k))| ind.get(k).is_some_and(|t| t.until == *u));
        }
    }

    /// Bytes this ledger has allocated, counted from capacities (deterministic):
    /// (indicator side, value side).
    pub fn allocated_bytes(&self) -> (usize, usize) {
        let entry = |kv: usize, cap: usize| buckets(cap) * (kv + 1);
        let ind = entry(size_of::<(Key, Tracked)>(), self.indicators.capacity())
            + entry(size_of::<(Key, Box<[u32]>)>(), self.multi.capacity())
            + self.multi.values().map(|v| v.len() * 4).sum::<usize>()
            + self.expiry.capacity() * size_of::<Reverse<(u32, Key)>>();
        let val = self.slots.capacity() * size_of::<Slot>()
            + self.slots.iter().map(|s| s.value.len()).sum::<usize>()
            + self.free.capacity() * 4
            + buckets(self.index.capacity()) * (4 + 1);
        (ind, val)
    }

    // ------------------------------------------------------------ snapshot

    /// Format: `SCL1`, value count, values (u32 length + UTF-8), indicator count, then per
    /// indicator key (16 bytes), until (u32), value count (u32), slot numbers (u32 each);
    /// all little-endian. Slot numbers index the snapshot's own value list.
    pub fn snapshot(&self) -> Vec<u8> {
        // Values are numbered in order of first use over the sorted keys, so equal ledgers
        // give equal bytes whatever their slot layout.
        let mut renum = vec![u32::MAX; self.slots.len()];
        let mut order: Vec<u32> = Vec::new();
        let mut body = Vec::new();
        body.extend((self.indicators.len() as u32).to_le_bytes());
        let mut keys: Vec<&Key> = self.indicators.keys().collect();
        keys.sort_unstable();
        for k in keys {
            let t = &self.indicators[k];
            for w in k {
                body.extend(w.to_le_bytes());
            }
            body.extend(t.until.to_le_bytes());
            let ids: &[u32] = match t.val {
                NONE => &[],
                MULTI => &self.multi[k],
                _ => std::slice::from_ref(&t.val),
            };
            body.extend((ids.len() as u32).to_le_bytes());
            for &i in ids {
                let n = &mut renum[i as usize];
                if *n == u32::MAX {
                    *n = order.len() as u32;
                    order.push(i);
                }
                body.extend(n.to_le_bytes());
            }
        }
        let mut out = b"SCL1".to_vec();
        out.extend((order.len() as u32).to_le_bytes());
        for i in order {
            let v = self.slots[i as usize].value.as_bytes();
            out.extend((v.len() as u32).to_le_bytes());
            out.extend(v);
        }
        out.extend(body);
        out
    }

    pub fn restore(policy: Policy, bytes: &[u8]) -> Result<Self, SnapshotError> {
        let mut r = Reader { b: bytes, at: 0 };
        if r.take(4)? != b"SCL1" {
            return Err(SnapshotError::Format);
        }
        let mut l = Ledger::new(policy);
        let nvals = r.u32()? as usize;
        let mut values = Vec::with_capacity(nvals.min(bytes.len() / 4));
        for _ in 0..nvals {
            let len = r.u32()? as usize;
            let at = r.at;
            let s = std::str::from_utf8(r.take(len)?).map_err(|_| SnapshotError::Corrupt(at))?;
            values.push(s.to_owned());
        }
        let mut ignore = Vec::new();
        let n = r.u32()?;
        for _ in 0..n {
            let key = [r.u32()?, r.u32()?, r.u32()?, r.u32()?];
            let until = r.u32()?;
            let k = r.u32()? as usize;
            let mut ids = Vec::with_capacity(k.min(16));
            for _ in 0..k {
                let at = r.at;
                let v = values
                    .get(r.u32()? as usize)
                    .ok_or(SnapshotError::Corrupt(at))?;
                let id = l.acquire(v, &mut ignore);
                if ids.contains(&id) {
                    return Err(SnapshotError::Corrupt(at));
                }
                ids.push(id);
            }
            if l.indicators.contains_key(&key) {
                return Err(SnapshotError::Corrupt(r.at));
            }
            let val = match ids.as_slice() {
                [] => NONE,
                [one] => *one,
                _ => {
                    l.multi.insert(key, ids.into_boxed_slice());
                    MULTI
                }
            };
            l.indicators.insert(key, Tracked { val, until });
            if until != NO_EXPIRY {
                l.expiry.push(Reverse((until, key)));
            }
        }
        if r.at != bytes.len() {
            return Err(SnapshotError::Corrupt(r.at));
        }
        Ok(l)
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        let s = self.b.get(
            self.at
                ..self
                    .at
                    .checked_add(n)
                    .ok_or(SnapshotError::Corrupt(self.at))?,
        );
        let s = s.ok_or(SnapshotError::Corrupt(self.at))?;
        self.at += n;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
}

#[cfg(test)]
mod tests;
