//! pycti's bundle splitting: one object per message, dependencies first.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::stix::{Bundle, StixObject};

/// One object of a bundle, wrapped in its own bundle, as one AMQP message carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitBundle {
    /// `x_opencti_seq`: the object's `nb_deps`.
    pub(crate) seq: u64,
    /// The id of the one object inside.
    pub(crate) object_id: String,
    /// `{"type":"bundle","id":<the whole bundle's id>,"spec_version":"2.1",
    /// "x_opencti_seq":<seq>,"objects":[<object>]}`.
    pub(crate) json: String,
}

#[derive(Serialize)]
struct OneObjectBundle<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    spec_version: &'a str,
    x_opencti_seq: u64,
    objects: [&'a StixObject; 1],
}

/// Which objects survive pycti's "cleanup inconsistent bundle": a relationship whose source
/// or target is not in the bundle is dropped, and dropping it can orphan another relationship
/// that points at it, so this runs until nothing changes. Nothing is cloned.
fn survivors(objects: &[StixObject]) -> Vec<bool> {
    let mut alive = vec![true; objects.len()];
    loop {
        let present: HashSet<&str> = objects
            .iter()
            .zip(&alive)
            .filter(|(_, a)| **a)
            .map(|(o, _)| o.id())
            .collect();
        let mut changed = false;
        for (o, a) in objects.iter().zip(alive.iter_mut()) {
            if let (true, StixObject::Relationship(r)) = (*a, o)
                && !(present.contains(r.source_ref.as_str())
                    && present.contains(r.target_ref.as_str()))
            {
                *a = false;
                changed = true;
            }
        }
        if !changed {
            return alive;
        }
    }
}

/// pycti's "cleanup inconsistent bundle": the surviving objects (see [`survivors`]), with
/// their references to objects absent from the bundle dropped.
///
/// An object with nothing to drop is borrowed, not copied: in a whole page every reference
/// is present, so the common case copies nothing.
pub(crate) fn cleanup(bundle: &Bundle) -> Vec<Cow<'_, StixObject>> {
    let alive = survivors(&bundle.objects);
    let present: HashSet<&str> = bundle
        .objects
        .iter()
        .zip(&alive)
        .filter(|(_, a)| **a)
        .map(|(o, _)| o.id())
        .collect();
    bundle
        .objects
        .iter()
        .zip(&alive)
        .filter(|(_, a)| **a)
        .map(|(o, _)| {
            if o.refs().iter().all(|r| present.contains(r)) {
                Cow::Borrowed(o)
            } else {
                let mut o = o.clone();
                // Every survivor keeps its ends, so this only drops optional references.
                o.retain_refs(&|id| present.contains(id));
                Cow::Owned(o)
            }
        })
        .collect()
}

/// `nb_deps` of every object: 1 + the sum of the `nb_deps` of the objects it references
/// (each reference counts, as in pycti). Iterative, so a long chain cannot overflow the
/// stack; a reference that closes a cycle contributes nothing, so a cyclic bundle still
/// gets finite values.
fn nb_deps(objects: &[Cow<'_, StixObject>]) -> Vec<u64> {
    // The first object wins on duplicate ids, like the bundle's own de-duplication.
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(objects.len());
    for (i, o) in objects.iter().enumerate() {
        index.entry(o.id()).or_insert(i);
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        InProgress,
        Done(u64),
    }
    let mut marks = vec![Mark::New; objects.len()];
    let deps: Vec<Vec<usize>> = objects
        .iter()
        .map(|o| {
            o.refs()
                .iter()
                .filter_map(|r| index.get(r).copied())
                .collect()
        })
        .collect();
    for start in 0..objects.len() {
        if marks[start] != Mark::New {
            continue;
        }
        let mut stack = vec![start];
        marks[start] = Mark::InProgress;
        while let Some(&top) = stack.last() {
            let next = deps[top].iter().copied().find(|&d| marks[d] == Mark::New);
            match next {
                Some(d) => {
                    marks[d] = Mark::InProgress;
                    stack.push(d);
                }
                None => {
                    let sum = deps[top].iter().fold(1u64, |acc, &d| match marks[d] {
                        Mark::Done(n) => acc.saturating_add(n),
                        // A back edge (cycle, or a self-reference).
                        Mark::InProgress | Mark::New => acc,
                    });
                    marks[top] = Mark::Done(sum);
                    stack.pop();
                }
            }
        }
    }
    marks
        .into_iter()
        .map(|m| match m {
            Mark::Done(n) => n,
            Mark::New | Mark::InProgress => 1,
        })
        .collect()
}

/// Cleans the bundle up, orders it by ascending `nb_deps` (bundle order among equals) and
/// wraps each object in its own bundle carrying the whole bundle's id.
pub fn split_bundle(bundle: &Bundle) -> Vec<SplitBundle> {
    let objects = cleanup(bundle);
    let seqs = nb_deps(&objects);
    let mut order: Vec<usize> = (0..objects.len()).collect();
    // `sort_by_key` is stable: equal depths keep the bundle's order.
    order.sort_by_key(|&i| seqs[i]);
    order
        .into_iter()
        .map(|i| {
            let o = &objects[i];
            let one = OneObjectBundle {
                kind: "bundle",
                id: &bundle.id,
                spec_version: &bundle.spec_version,
                x_opencti_seq: seqs[i],
                objects: [o],
            };
            SplitBundle {
                seq: seqs[i],
                object_id: o.id().to_owned(),
                // Derived `Serialize` of structs with string keys into a `String` has no
                // failure path; a panic here would be a bug in the STIX model, not bad input.
                json: serde_json::to_string(&one).expect("STIX objects always serialise"),
            }
        })
        .collect()
}

/// How many messages [`split_bundle`] makes of `bundle`, without copying or serialising it.
pub fn split_count(bundle: &Bundle) -> u64 {
    survivors(&bundle.objects)
        .into_iter()
        .filter(|a| *a)
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stix::{Identity, Relationship, SPEC_VERSION};

    fn identity(id: &str) -> StixObject {
        let mut i = Identity::arcsight_author();
        i.id = id.into();
        StixObject::Identity(i)
    }

    fn rel(id: &str, by: Option<&str>, source: &str, target: &str) -> StixObject {
        StixObject::Relationship(Relationship {
            spec_version: SPEC_VERSION.into(),
            id: id.into(),
            created_by_ref: by.map(str::to_owned),
            created: None,
            modified: None,
            relationship_type: "related-to".into(),
            source_ref: source.into(),
            target_ref: target.into(),
            object_marking_refs: vec![],
        })
    }

    #[test]
    fn equal_depths_keep_bundle_order_and_dependencies_come_first() {
        let b = Bundle::with_id(
            "bundle--b".into(),
            vec![
                rel("relationship--r", None, "identity--b", "identity--a"),
                identity("identity--b"),
                identity("identity--a"),
            ],
        );
        let parts = split_bundle(&b);
        let got: Vec<(&str, u64)> = parts
            .iter()
            .map(|p| (p.object_id.as_str(), p.seq))
            .collect();
        assert_eq!(
            got,
            vec![
                ("identity--b", 1),
                ("identity--a", 1),
                ("relationship--r", 3)
            ]
        );
        let v: serde_json::Value = serde_json::from_str(&parts[2].json).unwrap();
        assert_eq!(v["id"], "bundle--b");
        assert_eq!(v["x_opencti_seq"], 3);
        assert_eq!(split_count(&b), 3);
    }

    #[test]
    fn a_relationship_to_a_dropped_relationship_is_dropped_too() {
        // r2 points at r1, which points at an absent object: both go, in two rounds.
        let b = Bundle::with_id(
            "bundle--b".into(),
            vec![
                identity("identity--a"),
                rel("relationship--r1", None, "identity--a", "identity--absent"),
                rel(
                    "relationship--r2",
                    Some("identity--absent"),
                    "identity--a",
                    "relationship--r1",
                ),
            ],
        );
        let ids: Vec<String> = split_bundle(&b).into_iter().map(|p| p.object_id).collect();
        assert_eq!(ids, vec!["identity--a".to_owned()]);
    }

    #[test]
    fn cycles_and_long_chains_terminate() {
        // r1 <-> r2 reference each other; a chain of 100k relationships must not recurse.
        let mut objects = vec![
            identity("identity--a"),
            rel("relationship--r1", None, "identity--a", "relationship--r2"),
            rel("relationship--r2", None, "identity--a", "relationship--r1"),
        ];
        let parts = split_bundle(&Bundle::with_id("bundle--c".into(), objects.clone()));
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.seq >= 1));
        objects.truncate(1);
        let mut prev = "identity--a".to_owned();
        for i in 0..100_000 {
            let id = format!("relationship--{i}");
            objects.push(rel(&id, None, "identity--a", &prev));
            prev = id;
        }
        let parts = split_bundle(&Bundle::with_id("bundle--d".into(), objects));
        assert_eq!(parts.len(), 100_001);
        // Sums saturate instead of overflowing.
        assert!(parts.windows(2).all(|w| w[0].seq <= w[1].seq));
    }
}
