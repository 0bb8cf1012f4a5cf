//! The ledger: which tracked indicator carries which values, and how many live indicators
//! carry each value. It turns stream events into the list changes to make.
//!
//! Only *contributing* indicators are tracked: an excluded one (revoked, detection off,
//! expired, unsupported pattern…) comes back only through an event, and every event
//! carries the whole object, so nothing has to be kept for it.
//!
//! Memory (issue 21's budget is 100 bytes per indicator at 1,000,000; README, Memory):
//! - an indicator is one 24-byte entry in a dense vector (16-byte key, the FNV-1a 128 of
//!   its key string, stored once; one value slot id; `valid_until` in seconds), found
//!   through a hash table of u32 entry ids, plus an 8-byte expiry heap item;
//! - indicators with several values keep them in a side map, by entry id;
//! - each distinct value lives once, as a length-prefixed record in one string arena (no
//!   allocation, pointer or allocator header per value), with an 8-byte slot (arena offset,
//!   carrier count) and a u32 in a hash table that hashes the arena's text;
//! - freed entries and slots are reused through free lists threaded through themselves,
//!   and the arena is compacted once its dead bytes outweigh its live ones, so memory
//!   follows the live set under any churn.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};
use thiserror::Error;

use crate::event::{Object, StreamEvent, Topic};
use crate::policy::{self, Exclusion, Policy};

type Key = [u32; 4];
/// `Entry::val` of an indicator without values.
const NONE: u32 = u32::MAX;
/// `Entry::val` of an indicator whose values are in `Ledger::multi`.
const MULTI: u32 = u32::MAX - 1;
/// `Entry::val` of a free entry (its `until` links the next free one).
const FREE: u32 = u32::MAX - 2;
const NO_EXPIRY: u32 = u32::MAX;
/// End of a free list.
const END: u32 = u32::MAX;
/// The arena is compacted when its dead bytes exceed its live bytes and this much: small
/// arenas are not compacted over and over for a few bytes.
const MIN_GARBAGE: usize = 16 * 1024;
/// Stale expiry items tolerated beyond twice the tracked indicators before a sweep.
const EXPIRY_SLACK: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Change {
    Add(String),
    Remove(String),
}

/// A tracked indicator, or a free entry (`val == FREE`, `until` = next free entry).
#[derive(Debug, Clone, Copy)]
struct Entry {
    key: Key,
    /// The value slot, `NONE` or `MULTI`.
    val: u32,
    /// `valid_until` in Unix seconds, rounded up; `NO_EXPIRY` when none.
    until: u32,
}

/// A distinct value, or a free slot (`refs == 0`, `off` = next free slot).
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Offset of the value's record in the arena.
    off: u32,
    /// Live indicators carrying the value.
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

pub struct Ledger {
    policy: Policy,
    entries: Vec<Entry>,
    free_entry: u32,
    /// Entry ids, hashed by their entry's key.
    by_key: HashTable<u32>,
    /// Values of the indicators carrying more than one, by entry id.
    multi: HashMap<u32, Box<[u32]>>,
    values: Values,
    /// Slot ids, hashed by their value's text.
    by_value: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// (until, entry id); lazily deleted: an item is live only while that entry is tracked
    /// with that `until` (a stale item whose entry was reused with the same `until` names a
    /// real deadline, so it does no harm and is deduplicated by the next sweep).
    expiry: BinaryHeap<Reverse<(u32, u32)>>,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger")
            .field("policy", &self.policy)
            .field("tracked", &self.by_key.len())
            .field("values", &self.by_value.len())
            .field("allocated_bytes", &self.allocated_bytes())
            .finish_non_exhaustive()
    }
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

/// Appends a value's length: 6 bits per byte, least significant first, bit 6 set on every
/// byte but the last. Every byte is below 0x80, so the arena stays valid UTF-8 (ASCII) and
/// values are sliced out of it without unsafe code or re-validation.
fn put_len(arena: &mut String, mut n: usize) {
    loop {
        let b = (n & 0x3f) as u8;
        n >>= 6;
        if n == 0 {
            arena.push(char::from(b));
            return;
        }
        arena.push(char::from(b | 0x40));
    }
}

/// Bytes `put_len` writes for `n`.
fn len_len(n: usize) -> usize {
    let bits = usize::BITS - n.leading_zeros();
    (bits as usize).div_ceil(6).max(1)
}

/// Where the value of the record at `off` starts, and its length.
fn header(bytes: &[u8], off: usize) -> (usize, usize) {
    let (mut at, mut n, mut shift) = (off, 0usize, 0);
    loop {
        let b = bytes[at];
        at += 1;
        n |= usize::from(b & 0x3f) << shift;
        shift += 6;
        if b & 0x40 == 0 {
            return (at, n);
        }
    }
}

/// The value of the record at `off`, and the record's whole length.
fn record(arena: &str, off: u32) -> (&str, usize) {
    let (at, n) = header(arena.as_bytes(), off as usize);
    (&arena[at..at + n], at + n - off as usize)
}

fn value_at(arena: &str, off: u32) -> &str {
    record(arena, off).0
}

/// The distinct values: slots, and the arena holding their text.
#[derive(Debug)]
struct Values {
    slots: Vec<Slot>,
    /// Head of the free slot list.
    free: u32,
    /// Value records: a length (`put_len`) then the value's UTF-8.
    arena: String,
    /// Bytes of `arena` in records no slot points at any more.
    garbage: usize,
}

impl Values {
    fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: END,
            arena: String::new(),
            garbage: 0,
        }
    }

    fn get(&self, i: u32) -> &str {
        value_at(&self.arena, self.slots[i as usize].off)
    }

    /// A slot for `value` (the caller knows it is new), with no carriers yet.
    fn insert(&mut self, value: &str) -> u32 {
        let need = len_len(value.len()) + value.len();
        if u32::try_from(self.arena.len() + need).is_err() {
            self.compact();
        }
        // 4 GiB of distinct live values is far past any memory this process is given; it
        // is killed for memory long before.
        let off = u32::try_from(self.arena.len() + need)
            .map(|_| self.arena.len() as u32)
            .expect("ledger values under 4 GiB");
        put_len(&mut self.arena, value.len());
        self.arena.push_str(value);
        let slot = Slot { off, refs: 0 };
        match self.free {
            END => {
                self.slots.push(slot);
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 values")
            }
            i => {
                self.free = self.slots[i as usize].off;
                self.slots[i as usize] = slot;
                i
            }
        }
    }

    /// Frees slot `i` (no carriers left); its record becomes garbage.
    fn free(&mut self, i: u32) {
        let slot = &mut self.slots[i as usize];
        self.garbage += record(&self.arena, slot.off).1;
        slot.off = self.free;
        self.free = i;
        if self.garbage > MIN_GARBAGE && self.garbage > self.arena.len() - self.garbage {
            self.compact();
        }
    }

    /// Moves the live records down over the dead ones, in arena order (slot ids, and so
    /// the value index, stay as they are), and gives back capacity far beyond the need.
    /// Triggered when the dead bytes outweigh the live ones, so its cost is amortised over
    /// the removals that made them.
    fn compact(&mut self) {
        if self.garbage == 0 {
            return;
        }
        let mut live: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&i| self.slots[i as usize].refs > 0)
            .collect();
        live.sort_unstable_by_key(|&i| self.slots[i as usize].off);
        let mut bytes = std::mem::take(&mut self.arena).into_bytes();
        let mut to = 0usize;
        for i in live {
            let slot = &mut self.slots[i as usize];
            let from = slot.off as usize;
            let (at, n) = header(&bytes, from);
            let len = at + n - from;
            bytes.copy_within(from..from + len, to);
            slot.off = to as u32;
            to += len;
        }
        bytes.truncate(to);
        if bytes.capacity() > 4 * to + MIN_GARBAGE {
            bytes.shrink_to(2 * to);
        }
        self.arena = String::from_utf8(bytes).expect("whole records moved, still UTF-8");
        self.garbage = 0;
    }
}

impl Ledger {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            entries: Vec::new(),
            free_entry: END,
            by_key: HashTable::new(),
            multi: HashMap::new(),
            values: Values::new(),
            by_value: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            expiry: BinaryHeap::new(),
        }
    }

    pub fn tracked(&self) -> usize {
        self.by_key.len()
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
                let i = self.track(key, NONE, until);
                self.entries[i as usize].val = self.values_in(i, ids);
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
        while let Some(Reverse((until, i))) = self.expiry.peek().copied() {
            if self.due(until, i) {
                return Some(i64::from(until) * 1000);
            }
            self.expiry.pop();
        }
        None
    }

    /// Removes the indicators whose `valid_until` is at or before `now` (Unix ms).
    pub fn expire(&mut self, now: i64) -> Vec<Change> {
        let mut old = Vec::new();
        while let Some(Reverse((until, i))) = self.expiry.peek().copied() {
            if i64::from(until) * 1000 > now {
                break;
            }
            self.expiry.pop();
            if self.due(until, i) {
                let key = self.entries[i as usize].key;
                self.untrack(key, &mut old);
            }
        }
        let mut changes = Vec::new();
        for id in old {
            self.release(id, &mut changes);
        }
        changes
    }

    /// Every value that should be in the list, each once, in no particular order. It
    /// allocates nothing: each value is sliced out of the arena.
    pub fn desired(&self) -> impl Iterator<Item = &str> {
        let v = &self.values;
        v.slots
            .iter()
            .filter(|s| s.refs > 0)
            .map(|s| value_at(&v.arena, s.off))
    }

    /// How many live indicators carry `value`.
    pub fn carriers(&self, value: &str) -> u32 {
        self.find_value(value)
            .map_or(0, |i| self.values.slots[i as usize].refs)
    }

    /// Gives back what the vectors and tables hold beyond the live set (their growth slack,
    /// the arena's dead records, stale expiry items), for a caller done with a bulk load.
    /// Entry and slot ids stay as they are, so free ones below the highest live one stay.
    pub fn shrink_to_fit(&mut self) {
        self.values.compact();
        self.values.arena.shrink_to_fit();
        self.sweep_expiry();
        self.expiry.shrink_to_fit();
        while self.entries.last().is_some_and(|e| e.val == FREE) {
            self.entries.pop();
        }
        while self.values.slots.last().is_some_and(|s| s.refs == 0) {
            self.values.slots.pop();
        }
        self.relink_free();
        self.entries.shrink_to_fit();
        self.values.slots.shrink_to_fit();
        self.multi.shrink_to_fit();
        let (entries, values, hasher) = (&self.entries, &self.values, &self.hasher);
        self.by_key
            .shrink_to_fit(|&i| hasher.hash_one(entries[i as usize].key));
        self.by_value
            .shrink_to_fit(|&i| hasher.hash_one(values.get(i)));
    }

    /// Bytes this ledger has allocated, counted from capacities (deterministic):
    /// (indicator side, value side).
    pub fn allocated_bytes(&self) -> (usize, usize) {
        let table = |item: usize, cap: usize| buckets(cap) * (item + 1);
        let ind = self.entries.capacity() * size_of::<Entry>()
            + table(4, self.by_key.capacity())
            + table(size_of::<(u32, Box<[u32]>)>(), self.multi.capacity())
            + self.multi.values().map(|v| v.len() * 4).sum::<usize>()
            + self.expiry.capacity() * size_of::<Reverse<(u32, u32)>>();
        let val = self.values.slots.capacity() * size_of::<Slot>()
            + self.values.arena.capacity()
            + table(4, self.by_value.capacity());
        (ind, val)
    }

    // ------------------------------------------------------------ indicators

    /// Whether the expiry item (until, i) names a tracked indicator's deadline.
    fn due(&self, until: u32, i: u32) -> bool {
        self.entries
            .get(i as usize)
            .is_some_and(|e| e.val != FREE && e.until == until)
    }

    /// Tracks `key` (not tracked yet) in a free entry; the caller sets its `val`.
    fn track(&mut self, key: Key, val: u32, until: u32) -> u32 {
        let entry = Entry { key, val, until };
        let i = match self.free_entry {
            END => {
                self.entries.push(entry);
                u32::try_from(self.entries.len() - 1).expect("fewer than 2^32 indicators")
            }
            i => {
                self.free_entry = self.entries[i as usize].until;
                self.entries[i as usize] = entry;
                i
            }
        };
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.by_key.insert_unique(hasher.hash_one(key), i, |&j| {
            hasher.hash_one(entries[j as usize].key)
        });
        if until != NO_EXPIRY {
            self.expiry.push(Reverse((until, i)));
        }
        i
    }

    /// `val` for entry `i` carrying the value slots `ids`.
    fn values_in(&mut self, i: u32, ids: Vec<u32>) -> u32 {
        match ids.as_slice() {
            [] => NONE,
            [one] => *one,
            _ => {
                self.multi.insert(i, ids.into_boxed_slice());
                MULTI
            }
        }
    }

    /// Stops tracking `key`, putting the value slots it carried in `old`.
    fn untrack(&mut self, key: Key, old: &mut Vec<u32>) {
        let h = self.hasher.hash_one(key);
        let entries = &self.entries;
        let Ok(found) = self
            .by_key
            .find_entry(h, |&i| entries[i as usize].key == key)
        else {
            return;
        };
        let (i, _) = found.remove();
        let e = &mut self.entries[i as usize];
        match e.val {
            NONE => {}
            MULTI => old.extend(self.multi.remove(&i).into_iter().flatten()),
            v => old.push(v),
        }
        *e = Entry {
            key: [0; 4],
            val: FREE,
            until: self.free_entry,
        };
        self.free_entry = i;
    }

    /// Sweeps stale expiry items once they outnumber the live ones.
    fn compact_expiry(&mut self) {
        if self.expiry.len() > 2 * self.by_key.len() + EXPIRY_SLACK {
            self.sweep_expiry();
        }
    }

    /// Keeps one item per tracked deadline: stale ones go, and so do the duplicates left
    /// when an entry was reused with the same `until` (else those would pile up under
    /// churn, every one of them looking live).
    fn sweep_expiry(&mut self) {
        let mut items = std::mem::take(&mut self.expiry).into_vec();
        items.retain(|&Reverse((u, i))| self.due(u, i));
        items.sort_unstable();
        items.dedup();
        self.expiry = BinaryHeap::from(items);
    }

    /// Rebuilds both free lists in ascending order (after `shrink_to_fit` cut their tails).
    fn relink_free(&mut self) {
        self.free_entry = END;
        for i in (0..self.entries.len()).rev() {
            if self.entries[i].val == FREE {
                self.entries[i].until = self.free_entry;
                self.free_entry = i as u32;
            }
        }
        let v = &mut self.values;
        v.free = END;
        for i in (0..v.slots.len()).rev() {
            if v.slots[i].refs == 0 {
                v.slots[i].off = v.free;
                v.free = i as u32;
            }
        }
    }

    // ------------------------------------------------------------ values

    fn find_value(&self, value: &str) -> Option<u32> {
        let h = self.hasher.hash_one(value);
        self.by_value
            .find(h, |&i| self.values.get(i) == value)
            .copied()
    }

    /// `value`'s slot, and whether it was created.
    fn intern(&mut self, value: &str) -> (u32, bool) {
        let h = self.hasher.hash_one(value);
        let (values, hasher) = (&self.values, &self.hasher);
        // One probe finds the value or the place for it.
        match self.by_value.entry(
            h,
            |&i| values.get(i) == value,
            |&i| hasher.hash_one(values.get(i)),
        ) {
            hashbrown::hash_table::Entry::Occupied(e) => (*e.get(), false),
            hashbrown::hash_table::Entry::Vacant(e) => {
                let i = self.values.insert(value);
                e.insert(i);
                (i, true)
            }
        }
    }

    fn acquire(&mut self, value: &str, changes: &mut Vec<Change>) -> u32 {
        let (i, new) = self.intern(value);
        if new {
            changes.push(Change::Add(value.to_owned()));
        }
        self.values.slots[i as usize].refs += 1;
        i
    }

    fn release(&mut self, i: u32, changes: &mut Vec<Change>) {
        let slot = &mut self.values.slots[i as usize];
        slot.refs -= 1;
        if slot.refs > 0 {
            return;
        }
        let value = self.values.get(i);
        let h = self.hasher.hash_one(value);
        if let Ok(e) = self.by_value.find_entry(h, |&j| j == i) {
            e.remove();
        }
        changes.push(Change::Remove(value.to_owned()));
        self.values.free(i);
    }

    // ------------------------------------------------------------ snapshot

    /// The value slots entry `i` carries.
    fn ids_of(&self, i: u32) -> &[u32] {
        let e = &self.entries[i as usize];
        match e.val {
            NONE => &[],
            MULTI => &self.multi[&i],
            _ => std::slice::from_ref(&e.val),
        }
    }

    /// Format: `SCL1`, value count, values (u32 length + UTF-8), indicator count, then per
    /// indicator in ascending key order: key (16 bytes), until (u32), value count (u32),
    /// value numbers (u32 each); all little-endian. Value numbers index the snapshot's own
    /// value list, which holds each carried value once, in order of first use.
    pub fn snapshot(&self) -> Vec<u8> {
        // Sorted keys and values numbered by first use: equal ledgers give equal bytes
        // whatever their entry and slot layout.
        let mut order: Vec<u32> = (0..self.entries.len() as u32)
            .filter(|&i| self.entries[i as usize].val != FREE)
            .collect();
        order.sort_unstable_by_key(|&i| self.entries[i as usize].key);
        let mut renum = vec![u32::MAX; self.values.slots.len()];
        let mut values: Vec<u32> = Vec::with_capacity(self.by_value.len());
        let mut size = 12;
        for &i in &order {
            let ids = self.ids_of(i);
            size += 24 + 4 * ids.len();
            for &s in ids {
                if renum[s as usize] == u32::MAX {
                    renum[s as usize] = values.len() as u32;
                    values.push(s);
                    size += 4 + self.values.get(s).len();
                }
            }
        }
        // Sized exactly: no doubling of a buffer of tens of megabytes.
        let mut out = Vec::with_capacity(size);
        out.extend(b"SCL1");
        out.extend((values.len() as u32).to_le_bytes());
        for s in values {
            let v = self.values.get(s);
            out.extend((v.len() as u32).to_le_bytes());
            out.extend(v.as_bytes());
        }
        out.extend((order.len() as u32).to_le_bytes());
        for i in order {
            let e = &self.entries[i as usize];
            for w in e.key {
                out.extend(w.to_le_bytes());
            }
            out.extend(e.until.to_le_bytes());
            let ids = self.ids_of(i);
            out.extend((ids.len() as u32).to_le_bytes());
            for &s in ids {
                out.extend(renum[s as usize].to_le_bytes());
            }
        }
        debug_assert_eq!(out.len(), size);
        out
    }

    /// Rebuilds a ledger from `snapshot`'s bytes, every vector and table sized for it up
    /// front. Rejected as corrupt: a length or value number out of range, invalid UTF-8, a
    /// value listed twice or carried by no indicator, keys not strictly ascending, an
    /// indicator naming one value twice, trailing bytes.
    pub fn restore(policy: Policy, bytes: &[u8]) -> Result<Self, SnapshotError> {
        let mut r = Reader { b: bytes, at: 0 };
        if r.take(4)? != b"SCL1" {
            return Err(SnapshotError::Format);
        }
        let nvals = r.u32()? as usize;
        // A first pass over the value list checks its lengths against the input and sizes
        // the arena exactly.
        let values_at = r.at;
        let mut arena = 0usize;
        for _ in 0..nvals {
            let len = r.u32()? as usize;
            r.take(len)?;
            arena += len_len(len) + len;
        }
        r.at = values_at;
        let mut l = Ledger::new(policy);
        l.values.arena.reserve_exact(arena);
        l.values.slots.reserve_exact(nvals);
        l.reserve_values(nvals);
        for _ in 0..nvals {
            let len = r.u32()? as usize;
            let at = r.at;
            let s = std::str::from_utf8(r.take(len)?).map_err(|_| SnapshotError::Corrupt(at))?;
            if !l.intern(s).1 {
                return Err(SnapshotError::Corrupt(at)); // listed twice
            }
        }
        let n = r.u32()? as usize;
        // Each indicator takes at least 24 bytes: the count cannot reserve past the input.
        let cap = n.min(r.remaining() / 24);
        l.entries.reserve_exact(cap);
        l.expiry.reserve_exact(cap);
        l.reserve_keys(cap);
        let mut prev: Option<Key> = None;
        // Reused for every indicator: no allocation per single-value one.
        let (mut ids, mut sorted) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let at = r.at;
            let key = [r.u32()?, r.u32()?, r.u32()?, r.u32()?];
            if prev.is_some_and(|p| p >= key) {
                return Err(SnapshotError::Corrupt(at));
            }
            prev = Some(key);
            let until = r.u32()?;
            let k = r.u32()? as usize;
            ids.clear();
            for _ in 0..k {
                let at = r.at;
                let s = r.u32()?;
                if s as usize >= nvals {
                    return Err(SnapshotError::Corrupt(at));
                }
                ids.push(s);
            }
            if k > 1 {
                // Sorted, not `contains`: a hostile count stays O(k log k).
                sorted.clone_from(&ids);
                sorted.sort_unstable();
                if sorted.windows(2).any(|w| w[0] == w[1]) {
                    return Err(SnapshotError::Corrupt(at));
                }
            }
            for &s in &ids {
                l.values.slots[s as usize].refs += 1;
            }
            let val = match ids.as_slice() {
                [] => NONE,
                [one] => *one,
                _ => MULTI,
            };
            let i = l.track(key, val, until);
            if val == MULTI {
                l.multi.insert(i, ids.as_slice().into());
            }
        }
        if r.at != bytes.len() {
            return Err(SnapshotError::Corrupt(r.at));
        }
        if l.values.slots.iter().any(|s| s.refs == 0) {
            // A value nobody carries: never written, so the list itself is wrong.
            return Err(SnapshotError::Corrupt(values_at));
        }
        l.expiry.shrink_to_fit();
        Ok(l)
    }

    fn reserve_keys(&mut self, n: usize) {
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.by_key
            .reserve(n, |&i| hasher.hash_one(entries[i as usize].key));
    }

    fn reserve_values(&mut self, n: usize) {
        let (values, hasher) = (&self.values, &self.hasher);
        self.by_value
            .reserve(n, |&i| hasher.hash_one(values.get(i)));
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
    fn remaining(&self) -> usize {
        self.b.len() - self.at
    }
}

#[cfg(test)]
mod tests;
