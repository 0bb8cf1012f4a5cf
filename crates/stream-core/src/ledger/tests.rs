use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::event::{self, Object, StreamEvent, Topic};
use crate::pattern::ExtractPolicy;
use crate::policy::Indicator;

fn ind(id: &str, pattern: &str) -> Indicator {
    Indicator {
        id: id.into(),
        pattern: Some(pattern.into()),
        pattern_type: Some("stix".into()),
        ..Default::default()
    }
}

fn ip(v: &str) -> String {
    format!("[ipv4-addr:value = '{v}']")
}

fn ev(topic: Topic, i: Indicator) -> StreamEvent {
    StreamEvent {
        topic,
        inner_type: None,
        object: Object::Indicator(i),
        previous_ids: vec![],
        merged_sources: vec![],
    }
}

fn add(v: &str) -> Change {
    Change::Add(v.into())
}
fn rm(v: &str) -> Change {
    Change::Remove(v.into())
}

fn desired(l: &Ledger) -> BTreeSet<String> {
    l.desired().map(str::to_owned).collect()
}

#[test]
fn shared_value_survives_one_delete() {
    let mut l = Ledger::new(Policy::default());
    let a = ind("indicator--a", "[file:hashes.MD5 = 'x']");
    let b = ind("indicator--b", "[file:hashes.'MD5' = 'x']");
    assert_eq!(
        l.apply(&ev(Topic::Create, a.clone()), 0).changes,
        vec![add("x")]
    );
    assert_eq!(l.apply(&ev(Topic::Create, b.clone()), 0).changes, vec![]);
    assert_eq!(l.carriers("x"), 2);
    assert_eq!(l.apply(&ev(Topic::Delete, a), 0).changes, vec![]);
    assert_eq!(l.apply(&ev(Topic::Delete, b), 0).changes, vec![rm("x")]);
    assert!(desired(&l).is_empty());
}

#[test]
fn escaped_quote_pattern_gives_its_value() {
    let mut l = Ledger::new(Policy::default());
    let a = ind("indicator--a", r"[url:value = 'http://e.example/it\'s']");
    assert_eq!(
        l.apply(&ev(Topic::Create, a), 0).changes,
        vec![add("http://e.example/it's")]
    );
}

#[test]
fn revoked_detection_off_and_expired_are_not_added_and_come_back_when_undone() {
    for (bad, why) in [
        (
            Indicator {
                revoked: true,
                ..ind("indicator--a", &ip("1.1.1.1"))
            },
            Exclusion::Revoked,
        ),
        (
            Indicator {
                detection: Some(false),
                ..ind("indicator--a", &ip("1.1.1.1"))
            },
            Exclusion::DetectionOff,
        ),
        (
            Indicator {
                valid_until: Some(5_000),
                ..ind("indicator--a", &ip("1.1.1.1"))
            },
            Exclusion::Expired,
        ),
    ] {
        let mut l = Ledger::new(Policy::default());
        let r = l.apply(&ev(Topic::Create, bad.clone()), 10_000);
        assert_eq!((r.changes, r.excluded), (vec![], Some(why)));
        let good = ind("indicator--a", &ip("1.1.1.1"));
        assert_eq!(
            l.apply(&ev(Topic::Update, good.clone()), 10_000).changes,
            vec![add("1.1.1.1")]
        );
        // Done again on a tracked indicator: removed.
        assert_eq!(
            l.apply(&ev(Topic::Update, bad), 10_000).changes,
            vec![rm("1.1.1.1")]
        );
    }
}

#[test]
fn score_minimum() {
    let mut l = Ledger::new(Policy {
        min_score: Some(60),
        ..Default::default()
    });
    let low = Indicator {
        score: Some(59),
        ..ind("indicator--a", &ip("1.1.1.1"))
    };
    assert_eq!(
        l.apply(&ev(Topic::Create, low), 0).excluded,
        Some(Exclusion::ScoreBelowMinimum)
    );
    let ok = Indicator {
        score: Some(60),
        ..ind("indicator--a", &ip("1.1.1.1"))
    };
    assert_eq!(
        l.apply(&ev(Topic::Update, ok), 0).changes,
        vec![add("1.1.1.1")]
    );
}

#[test]
fn pattern_change_removes_the_old_value() {
    let mut l = Ledger::new(Policy::default());
    let mut a = ind("indicator--a", &ip("1.1.1.1"));
    a.internal_id = Some("int-a".into());
    l.apply(&ev(Topic::Create, a.clone()), 0);
    // OpenCTI also changes the STIX id with the pattern; the internal id stays.
    let b = Indicator {
        id: "indicator--a2".into(),
        pattern: Some(ip("2.2.2.2")),
        ..a
    };
    assert_eq!(
        l.apply(&ev(Topic::Update, b), 0).changes,
        vec![add("2.2.2.2"), rm("1.1.1.1")]
    );
    assert_eq!(desired(&l), BTreeSet::from(["2.2.2.2".to_owned()]));
}

#[test]
fn pattern_change_keyed_by_stix_id_uses_reverse_patch() {
    let mut l = Ledger::new(Policy::default());
    l.apply(&ev(Topic::Create, ind("indicator--old", &ip("1.1.1.1"))), 0);
    let mut e = ev(Topic::Update, ind("indicator--new", &ip("2.2.2.2")));
    e.previous_ids = vec!["indicator--old".into()];
    assert_eq!(l.apply(&e, 0).changes, vec![add("2.2.2.2"), rm("1.1.1.1")]);
    assert_eq!(l.tracked(), 1);
}

#[test]
fn pattern_change_to_unsupported_leaves_the_list() {
    let mut l = Ledger::new(Policy::default());
    l.apply(&ev(Topic::Create, ind("indicator--a", &ip("1.1.1.1"))), 0);
    let b = ind(
        "indicator--a",
        "[ipv4-addr:value = '1.1.1.1' AND ipv4-addr:value = '2.2.2.2']",
    );
    let r = l.apply(&ev(Topic::Update, b), 0);
    assert_eq!(r.changes, vec![rm("1.1.1.1")]);
    assert_eq!(
        r.excluded,
        Some(Exclusion::Pattern(crate::pattern::Skip::And))
    );
}

#[test]
fn filter_exit_is_a_delete_even_with_an_inner_update() {
    let mut l = Ledger::new(Policy::default());
    let data = r#"{"type":"create","data":{"type":"indicator","id":"indicator--a","pattern":"[domain-name:value = 'd.example']","pattern_type":"stix"}}"#;
    let c = event::decode("create", data).unwrap().unwrap();
    assert_eq!(l.apply(&c, 0).changes, vec![add("d.example")]);
    let exit = data.replace(r#""type":"create""#, r#""type":"update""#);
    let d = event::decode("delete", &exit).unwrap().unwrap();
    assert_eq!(l.apply(&d, 0).changes, vec![rm("d.example")]);
    // Entering the filter again arrives as `create` (inner update).
    let e = event::decode("create", &exit).unwrap().unwrap();
    assert_eq!(l.apply(&e, 0).changes, vec![add("d.example")]);
}

#[test]
fn merge_forgets_sources_and_keeps_the_target() {
    let mut l = Ledger::new(Policy::default());
    l.apply(&ev(Topic::Create, ind("indicator--s1", &ip("1.1.1.1"))), 0);
    l.apply(&ev(Topic::Create, ind("indicator--s2", &ip("2.2.2.2"))), 0);
    l.apply(&ev(Topic::Create, ind("indicator--t", &ip("1.1.1.1"))), 0);
    let mut m = ev(Topic::Merge, ind("indicator--t", &ip("1.1.1.1")));
    m.merged_sources = vec!["indicator--s1".into(), "indicator--s2".into()];
    // 1.1.1.1 stays (the target carries it), 2.2.2.2 goes; no remove+add churn.
    assert_eq!(l.apply(&m, 0).changes, vec![rm("2.2.2.2")]);
    assert_eq!(l.tracked(), 1);
    // The platform's own delete events for the sources, if they come, change nothing.
    assert_eq!(
        l.apply(&ev(Topic::Delete, ind("indicator--s1", &ip("1.1.1.1"))), 0)
            .changes,
        vec![]
    );
}

#[test]
fn non_indicators_ignored_and_replays_idempotent() {
    let mut l = Ledger::new(Policy::default());
    let o = StreamEvent {
        topic: Topic::Create,
        inner_type: None,
        object: Object::Other {
            stix_type: "identity".into(),
            id: "identity--x".into(),
        },
        previous_ids: vec![],
        merged_sources: vec![],
    };
    assert_eq!(l.apply(&o, 0).changes, vec![]);
    let a = ev(Topic::Create, ind("indicator--a", &ip("1.1.1.1")));
    assert_eq!(l.apply(&a, 0).changes, vec![add("1.1.1.1")]);
    assert_eq!(l.apply(&a, 0).changes, vec![]);
    assert_eq!(l.carriers("1.1.1.1"), 1);
    let d = ev(Topic::Delete, ind("indicator--a", &ip("1.1.1.1")));
    assert_eq!(l.apply(&d, 0).changes, vec![rm("1.1.1.1")]);
    assert_eq!(l.apply(&d, 0).changes, vec![]);
}

#[test]
fn expiry_at_valid_until_without_an_event() {
    let mut l = Ledger::new(Policy::default());
    let a = Indicator {
        valid_until: Some(20_000),
        ..ind("indicator--a", &ip("1.1.1.1"))
    };
    let b = Indicator {
        valid_until: Some(30_500),
        ..ind("indicator--b", &ip("2.2.2.2"))
    };
    l.apply(&ev(Topic::Create, a.clone()), 0);
    l.apply(&ev(Topic::Create, b), 0);
    l.apply(&ev(Topic::Create, ind("indicator--c", &ip("3.3.3.3"))), 0);
    assert_eq!(l.next_expiry(), Some(20_000));
    assert_eq!(l.expire(19_999), vec![]);
    assert_eq!(l.expire(20_000), vec![rm("1.1.1.1")]);
    // Rounded up to the second: never early.
    assert_eq!(l.next_expiry(), Some(31_000));
    // An update extending validity replaces the old deadline.
    let b2 = Indicator {
        valid_until: Some(90_000),
        ..ind("indicator--b", &ip("2.2.2.2"))
    };
    assert_eq!(l.apply(&ev(Topic::Update, b2), 25_000).changes, vec![]);
    assert_eq!(l.next_expiry(), Some(90_000));
    assert_eq!(l.expire(89_000), vec![]);
    // Undone (valid_until pushed back): it comes back.
    let a2 = Indicator {
        valid_until: Some(100_000),
        ..a
    };
    assert_eq!(
        l.apply(&ev(Topic::Update, a2), 30_000).changes,
        vec![add("1.1.1.1")]
    );
    assert_eq!(l.expire(i64::MAX).len(), 2);
    assert_eq!(desired(&l), BTreeSet::from(["3.3.3.3".to_owned()]));
    assert_eq!(l.next_expiry(), None);
}

#[test]
fn or_values_indicator_carries_several() {
    let mut l = Ledger::new(Policy {
        extract: ExtractPolicy {
            or_values: true,
            extra_types: false,
        },
        min_score: None,
    });
    let p = "[ipv4-addr:value = '1.1.1.1' OR ipv4-addr:value = '2.2.2.2']";
    assert_eq!(
        l.apply(&ev(Topic::Create, ind("indicator--a", p)), 0)
            .changes,
        vec![add("1.1.1.1"), add("2.2.2.2")]
    );
    let snap = l.snapshot();
    let mut r = Ledger::restore(l.policy, &snap).unwrap();
    assert_eq!(
        r.apply(&ev(Topic::Delete, ind("indicator--a", p)), 0)
            .changes,
        vec![rm("1.1.1.1"), rm("2.2.2.2")]
    );
}

#[test]
fn restore_rejects_corrupt_snapshots() {
    let mut l = Ledger::new(Policy::default());
    l.apply(&ev(Topic::Create, ind("indicator--a", &ip("1.1.1.1"))), 0);
    let snap = l.snapshot();
    assert!(matches!(
        Ledger::restore(Policy::default(), b"XXXX"),
        Err(SnapshotError::Format)
    ));
    for n in 0..snap.len() {
        assert!(
            Ledger::restore(Policy::default(), &snap[..n]).is_err(),
            "prefix {n} accepted"
        );
    }
    let mut bad = snap.clone();
    let last = bad.len() - 4;
    bad[last..].copy_from_slice(&7u32.to_le_bytes()); // slot number out of range
    assert!(matches!(
        Ledger::restore(Policy::default(), &bad),
        Err(SnapshotError::Corrupt(_))
    ));
}

/// Prints and bounds the ledger's own allocation at 1,000,000 single-value indicators with
/// a `valid_until` (issue 21: at most 100 bytes per indicator), built event by event, then
/// shrunk, then restored from its snapshot; prints how long the snapshot and the restore
/// take. Run with `cargo test --release -p stream-core bytes_per -- --ignored --nocapture`;
/// `benches/ledger_memory.rs` gives the allocator's and the kernel's view.
#[test]
#[ignore = "measurement; run explicitly"]
fn bytes_per_indicator_at_one_million() {
    let mut l = Ledger::new(Policy::default());
    let n = 1_000_000u32;
    for i in 0..n {
        let v = format!(
            "{}.{}.{}.{}",
            10 + (i >> 24),
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255
        );
        let mut x = ind(
            &format!("indicator--{i:08x}-0000-4000-8000-000000000000"),
            &ip(&v),
        );
        x.valid_until = Some(4_000_000_000_000);
        l.apply(&ev(Topic::Create, x), 0);
    }
    let per = |l: &Ledger| {
        let (ind_b, val_b) = l.allocated_bytes();
        (ind_b as f64 / f64::from(n), val_b as f64 / f64::from(n))
    };
    let (per_ind, per_val) = per(&l);
    println!(
        "built: indicator side {per_ind:.1} B/indicator, value side {per_val:.1} B/value, total {:.1} B",
        per_ind + per_val
    );
    assert!(per_ind + per_val <= 100.0, "{:.1} B", per_ind + per_val);

    let started = std::time::Instant::now();
    let snap = l.snapshot();
    println!(
        "snapshot: {:.1} MB in {:.3} s",
        snap.len() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    l.shrink_to_fit();
    let (si, sv) = per(&l);
    println!("shrunk: {si:.1} + {sv:.1} = {:.1} B", si + sv);
    assert_eq!(l.snapshot(), snap, "shrink_to_fit changed the contents");
    drop(l);

    let started = std::time::Instant::now();
    let r = Ledger::restore(Policy::default(), &snap).unwrap();
    let took = started.elapsed().as_secs_f64();
    let (ri, rv) = per(&r);
    println!(
        "restored in {took:.3} s: {ri:.1} + {rv:.1} = {:.1} B",
        ri + rv
    );
    assert_eq!(r.tracked(), n as usize);
    assert!(ri + rv <= 100.0, "{:.1} B", ri + rv);
    let started = std::time::Instant::now();
    let (count, bytes) = r
        .desired()
        .fold((0usize, 0usize), |(c, b), v| (c + 1, b + v.len()));
    println!(
        "desired(): {count} values, {bytes} bytes, iterated in {:.3} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(count, n as usize);
}

/// Each record's length prefix spans 1, 2 or 3 bytes (values go up to the 64 KiB pattern
/// bound): values on both sides of each boundary come back whole, through the arena, its
/// compaction and a snapshot.
#[test]
fn values_of_every_length_class_round_trip() {
    let mut l = Ledger::new(Policy::default());
    let lens = [1usize, 2, 63, 64, 65, 4095, 4096, 4097, 65_000];
    let values: Vec<String> = lens
        .iter()
        .enumerate()
        .map(|(k, &n)| {
            // Multi-byte UTF-8 too: é is 2 bytes.
            let mut v = "é".repeat(n / 2);
            if n % 2 == 1 {
                v.push(char::from(b'a' + k as u8));
            }
            v
        })
        .collect();
    let mut changes = Vec::new();
    let ids: Vec<u32> = values.iter().map(|v| l.acquire(v, &mut changes)).collect();
    assert_eq!(changes.len(), values.len());
    for (v, &i) in values.iter().zip(&ids) {
        assert_eq!(l.values.get(i), v.as_str());
        assert_eq!(l.carriers(v), 1);
    }
    // Free every other one and compact: the rest keep their text.
    for &i in ids.iter().step_by(2) {
        l.release(i, &mut changes);
    }
    l.values.compact();
    let kept: BTreeSet<String> = values.iter().skip(1).step_by(2).cloned().collect();
    assert_eq!(desired(&l), kept);
    for v in values.iter().step_by(2) {
        assert_eq!(l.carriers(v), 0);
    }
    for v in &kept {
        assert_eq!(l.carriers(v), 1);
    }
    // And through indicators and a snapshot (a 65,000-byte value fits a 64 KiB pattern).
    let mut m = Ledger::new(Policy::default());
    for (k, v) in values.iter().enumerate() {
        let p = format!("[domain-name:value = '{v}']");
        m.apply(&ev(Topic::Create, ind(&format!("indicator--{k}"), &p)), 0);
    }
    let r = Ledger::restore(Policy::default(), &m.snapshot()).unwrap();
    assert_eq!(desired(&r), values.iter().cloned().collect::<BTreeSet<_>>());
}

/// 1,000,000 cycles over 1,000 live indicators, each cycle replacing one indicator's value
/// by a new one with the same `valid_until`: 16 MB of values and 1M expiry items pass
/// through, yet the ledger stays at what 1,000 live values need, and its answers stay right.
#[test]
fn churn_keeps_memory_bounded() {
    let mut l = Ledger::new(Policy::default());
    let live = 1_000usize;
    let value = |c: usize| format!("churn-{c:010}.example");
    let put = |l: &mut Ledger, c: usize| {
        let mut x = ind(
            &format!("indicator--{}", c % live),
            &format!("[domain-name:value = '{}']", value(c)),
        );
        x.valid_until = Some(4_000_000_000_000);
        l.apply(&ev(Topic::Update, x), 0).changes
    };
    for c in 0..live {
        put(&mut l, c);
    }
    let (i0, v0) = l.allocated_bytes();
    let start = i0 + v0;
    let mut most = start;
    let cycles = 1_000_000;
    for c in live..live + cycles {
        let changes = put(&mut l, c);
        // Replacing the only carrier: one add, one remove, every time.
        assert_eq!(changes, vec![add(&value(c)), rm(&value(c - live))]);
        if c % 10_000 == 0 {
            let (i, v) = l.allocated_bytes();
            most = most.max(i + v);
        }
    }
    let (i, v) = l.allocated_bytes();
    most = most.max(i + v);
    println!("churn: {start} bytes at the start, at most {most} over {cycles} cycles");
    // Every value that ever passed through, or every expiry item ever pushed, would be
    // megabytes; 1,000 live ones (25-byte values) with their tables are tens of KB.
    assert!(
        most <= start + 192 * 1024,
        "grew from {start} to {most} bytes under churn"
    );
    let want: BTreeSet<String> = (cycles..cycles + live).map(value).collect();
    assert_eq!(desired(&l), want);
    assert_eq!(l.tracked(), live);
    assert_eq!(l.next_expiry(), Some(4_000_000_000_000));
    assert_eq!(l.expire(i64::MAX).len(), live);
    assert!(desired(&l).is_empty());
}

/// Random acquires and releases of values up to 3 KB, so that the arena is compacted many
/// times, checked against a plain map after every step: each value keeps its text and its
/// carrier count through the moves.
#[test]
fn arena_compaction_keeps_every_value_and_count() {
    let mut l = Ledger::new(Policy::default());
    let mut model: std::collections::BTreeMap<String, (u32, u32)> = Default::default();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut changes = Vec::new();
    let mut compactions = 0;
    for step in 0..20_000 {
        let k = next(300);
        let v = format!("{k}:{}", "x".repeat(next(3_000) as usize));
        let v = model
            .keys()
            .find(|m| m.starts_with(&format!("{k}:")))
            .cloned()
            .unwrap_or(v);
        let garbage = l.values.garbage;
        if next(3) == 0 || !model.contains_key(&v) {
            let id = l.acquire(&v, &mut changes);
            model.entry(v.clone()).or_insert((id, 0)).1 += 1;
        } else {
            let (id, refs) = model.get_mut(&v).unwrap();
            l.release(*id, &mut changes);
            *refs -= 1;
            if *refs == 0 {
                model.remove(&v);
            }
        }
        if l.values.garbage < garbage {
            compactions += 1;
            for (v, &(id, refs)) in &model {
                assert_eq!(l.values.get(id), v, "step {step}");
                assert_eq!(l.carriers(v), refs, "step {step}");
            }
        }
    }
    println!("{compactions} compactions");
    assert!(compactions > 10, "only {compactions} compactions");
    let want: BTreeSet<String> = model.keys().cloned().collect();
    assert_eq!(desired(&l), want);
}

#[test]
fn restore_rejects_what_the_writer_never_writes() {
    let policy = Policy {
        extract: ExtractPolicy {
            or_values: true,
            extra_types: false,
        },
        min_score: None,
    };
    let le = |w: u32| w.to_le_bytes();
    let value = |out: &mut Vec<u8>, v: &str| {
        out.extend(le(v.len() as u32));
        out.extend(v.as_bytes());
    };
    let indicator = |out: &mut Vec<u8>, key: [u32; 4], vals: &[u32]| {
        for w in key {
            out.extend(le(w));
        }
        out.extend(le(NO_EXPIRY));
        out.extend(le(vals.len() as u32));
        for &v in vals {
            out.extend(le(v));
        }
    };
    let snap = |vals: &[&str], inds: &[([u32; 4], &[u32])]| {
        let mut out = b"SCL1".to_vec();
        out.extend(le(vals.len() as u32));
        for v in vals {
            value(&mut out, v);
        }
        out.extend(le(inds.len() as u32));
        for (k, ids) in inds {
            indicator(&mut out, *k, ids);
        }
        out
    };
    let (k1, k2) = ([0, 0, 0, 1], [0, 0, 0, 2]);
    // The well-formed one restores, so each rejection below is for its one defect.
    let good = snap(&["a", "b"], &[(k1, &[0]), (k2, &[0, 1])]);
    let r = Ledger::restore(policy, &good).unwrap();
    assert_eq!((r.carriers("a"), r.carriers("b")), (2, 1));
    assert_eq!(r.snapshot(), good);
    for (what, bad) in [
        ("keys out of order", snap(&["a"], &[(k2, &[0]), (k1, &[0])])),
        ("key twice", snap(&["a"], &[(k1, &[0]), (k1, &[0])])),
        ("value twice", snap(&["a", "a"], &[(k1, &[0]), (k2, &[1])])),
        ("value nobody carries", snap(&["a", "b"], &[(k1, &[0])])),
        (
            "one value twice in an indicator",
            snap(&["a", "b"], &[(k1, &[0, 1, 0])]),
        ),
        ("value number out of range", snap(&["a"], &[(k1, &[1])])),
        ("trailing bytes", [good.clone(), vec![0]].concat()),
    ] {
        assert!(
            matches!(
                Ledger::restore(policy, &bad),
                Err(SnapshotError::Corrupt(_))
            ),
            "{what} accepted"
        );
    }
    let mut utf8 = snap(&["a"], &[(k1, &[0])]);
    utf8[12] = 0xff;
    assert!(matches!(
        Ledger::restore(policy, &utf8),
        Err(SnapshotError::Corrupt(12))
    ));
}

#[test]
fn shrink_to_fit_keeps_contents_and_gives_memory_back() {
    let mut l = Ledger::new(Policy::default());
    for i in 0..5_000u32 {
        let mut x = ind(
            &format!("indicator--{i}"),
            &ip(&format!("10.0.{}.{}", i >> 8, i & 255)),
        );
        x.valid_until = Some(1_000_000 + i64::from(i) * 1000);
        l.apply(&ev(Topic::Create, x), 0);
    }
    // Remove the last 4,000 (tails of the entry and slot vectors free) and one in the middle.
    for i in (1_000..5_000u32).chain([500]) {
        l.apply(
            &ev(
                Topic::Delete,
                ind(&format!("indicator--{i}"), "[x:y = 'z']"),
            ),
            0,
        );
    }
    let before = l.allocated_bytes();
    let snap = l.snapshot();
    l.shrink_to_fit();
    let after = l.allocated_bytes();
    assert!(
        after.0 * 2 < before.0 && after.1 * 2 < before.1,
        "{before:?} -> {after:?}"
    );
    assert_eq!(l.snapshot(), snap);
    assert_eq!(l.next_expiry(), Some(1_000_000));
    // Free entries and slots are still reused, and new ones appended, after the shrink.
    for i in [500u32, 7_000, 7_001] {
        let x = ind(
            &format!("indicator--{i}"),
            &ip(&format!("10.9.{}.{}", i >> 8, i & 255)),
        );
        assert_eq!(l.apply(&ev(Topic::Create, x), 0).changes.len(), 1);
    }
    assert_eq!(l.tracked(), 1_002);
    assert_eq!(l.expire(i64::MAX).len(), 999);
    assert_eq!(desired(&l).len(), 3);
}

#[derive(Debug, Clone)]
enum Op {
    Put {
        ind: u8,
        vals: Vec<u8>,
        revoked: bool,
        until: Option<u8>,
    },
    Delete(u8),
    Merge {
        target: u8,
        source: u8,
        val: u8,
    },
    Expire(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            0u8..6,
            proptest::collection::vec(0u8..5, 0..3),
            any::<bool>(),
            proptest::option::of(0u8..20)
        )
            .prop_map(|(ind, vals, revoked, until)| Op::Put {
                ind,
                vals,
                revoked,
                until
            }),
        (0u8..6).prop_map(Op::Delete),
        (0u8..6, 0u8..6, 0u8..5).prop_map(|(target, source, val)| Op::Merge {
            target,
            source,
            val
        }),
        (0u8..20).prop_map(Op::Expire),
    ]
}

fn pattern_of(vals: &[u8]) -> String {
    if vals.is_empty() {
        return "[email-addr:value = 'x@y']".into();
    }
    let parts: Vec<String> = vals
        .iter()
        .map(|v| format!("ipv4-addr:value = '10.0.0.{v}'"))
        .collect();
    format!("[{}]", parts.join(" OR "))
}

proptest! {
    /// Changes applied in order to an empty list always give `desired()`, which is exactly
    /// the values of the indicators a naive model says are live; snapshots round-trip.
    #[test]
    fn changes_replay_to_desired_and_match_a_model(ops in proptest::collection::vec(op(), 0..60)) {
        let policy = Policy { extract: ExtractPolicy { or_values: true, extra_types: false }, min_score: None };
        let mut l = Ledger::new(policy);
        let mut list: BTreeSet<String> = BTreeSet::new();
        // model: indicator -> (values, until seconds)
        let mut model: std::collections::BTreeMap<u8, (BTreeSet<String>, Option<i64>)> = Default::default();
        let mut now = 0i64;
        for op in ops {
            let changes = match op {
                Op::Put { ind: i, vals, revoked, until } => {
                    let until = until.map(|u| i64::from(u) * 1000);
                    let x = Indicator { revoked, valid_until: until, ..ind(&format!("indicator--{i}"), &pattern_of(&vals)) };
                    model.remove(&i);
                    if !revoked && !vals.is_empty() && until.is_none_or(|u| u > now) {
                        model.insert(i, (vals.iter().map(|v| format!("10.0.0.{v}")).collect(), until));
                    }
                    l.apply(&ev(Topic::Update, x), now).changes
                }
                Op::Delete(i) => {
                    model.remove(&i);
                    l.apply(&ev(Topic::Delete, ind(&format!("indicator--{i}"), "[x:y = 'z']")), now).changes
                }
                Op::Merge { target, source, val } => {
                    model.remove(&source);
                    model.insert(target, (BTreeSet::from([format!("10.0.0.{val}")]), None));
                    let mut e = ev(Topic::Merge, ind(&format!("indicator--{target}"), &pattern_of(&[val])));
                    e.merged_sources = vec![format!("indicator--{source}")];
                    l.apply(&e, now).changes
                }
                Op::Expire(t) => {
                    now = now.max(i64::from(t) * 1000);
                    model.retain(|_, (_, u)| u.is_none_or(|u| u > now));
                    l.expire(now)
                }
            };
            for c in changes {
                match c {
                    Change::Add(v) => prop_assert!(list.insert(v.clone()), "double add {}", v),
                    Change::Remove(v) => prop_assert!(list.remove(&v), "remove of absent {}", v),
                }
            }
            prop_assert_eq!(&list, &desired(&l));
            let expect: BTreeSet<String> = model.values().flat_map(|(v, _)| v.iter().cloned()).collect();
            prop_assert_eq!(&list, &expect);
            let mut r = Ledger::restore(policy, &l.snapshot()).unwrap();
            prop_assert_eq!(desired(&r), desired(&l));
            prop_assert_eq!(r.snapshot(), l.snapshot());
            prop_assert_eq!(r.next_expiry(), l.next_expiry());
        }
    }
}
