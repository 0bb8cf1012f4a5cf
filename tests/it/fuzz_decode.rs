//! Fuzzing (property tests) of what the connector reads from ESM: JSON repair, answer
//! unwrapping, HTML error detection and the lenient case/event models. Never a panic, and
//! repair's output at most six times its input (no unbounded allocation). Seeds: every file of
//! `tests/data/fixtures/esm`, mutated.

use arcsight_incidents::convert::{ConvertOptions, Converter};
use arcsight_incidents::esm::decode::{
    is_html, java_exception, parse_json, repair_json, says_token_invalid, unwrap_answer,
};
use arcsight_incidents::esm::model::{Case, SecurityEvent};
use proptest::prelude::*;
use serde_json::Value;

/// The most repair can grow a body: a raw control character inside a string becomes `\u00XX`
/// (six bytes for one); a stray backslash becomes two.
const MAX_GROWTH: usize = 6;

fn fixtures() -> Vec<String> {
    let dir = crate::common::data::FIXTURES;
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .expect("fixtures")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect();
    out.sort();
    assert!(out.len() >= 10, "the fixtures are there");
    out
}

/// One edit of a text, at a position chosen by `at` (a fraction of its length).
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(f64),
    Insert(f64, String),
    Delete(f64, usize),
    Duplicate(f64, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = 0.0..1.0f64;
    prop_oneof![
        at.clone().prop_map(Mutation::Truncate),
        (
            at.clone(),
            prop_oneof![
                Just("\\".to_owned()),
                Just("\\u".to_owned()),
                Just("\"".to_owned()),
                Just("{".to_owned()),
                Just("]".to_owned()),
                Just("-9223372036854775808".to_owned()),
                Just("1e999".to_owned()),
                Just("\u{0}".to_owned()),
                Just("<html>".to_owned()),
                ".{0,8}",
            ]
        )
            .prop_map(|(a, s)| Mutation::Insert(a, s)),
        (at.clone(), 1..16usize).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (at, 1..64usize).prop_map(|(a, n)| Mutation::Duplicate(a, n)),
    ]
}

fn boundary(s: &str, at: f64) -> usize {
    let mut i = ((s.len() as f64) * at) as usize;
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i.min(s.len())
}

fn apply(mut s: String, muts: &[Mutation]) -> String {
    for m in muts {
        match m {
            Mutation::Truncate(at) => {
                let i = boundary(&s, *at);
                s.truncate(i);
            }
            Mutation::Insert(at, text) => {
                let i = boundary(&s, *at);
                s.insert_str(i, text);
            }
            Mutation::Delete(at, n) => {
                let i = boundary(&s, *at);
                let j = boundary(&s, ((i + n) as f64 / s.len().max(1) as f64).min(1.0));
                s.replace_range(i..j.max(i), "");
            }
            Mutation::Duplicate(at, n) => {
                let i = boundary(&s, *at);
                let j = boundary(&s, ((i + n) as f64 / s.len().max(1) as f64).min(1.0));
                let piece = s[i..j.max(i)].to_owned();
                s.insert_str(i, &piece);
            }
        }
    }
    s
}

/// Everything the client does with a body, end to end: detect HTML, parse (repairing), unwrap
/// in both dialects, decode cases and events, convert.
fn read_like_the_client(body: &str) {
    let _ = is_html(Some("application/json"), body);
    let _ = is_html(None, body);
    let _ = java_exception(body);
    let _ = says_token_invalid(body);
    if let Ok(v) = parse_json(body) {
        for op in [
            "findAllIds",
            "getResourceById",
            "getSecurityEvents",
            "login",
        ] {
            if let Ok(Some(inner)) = unwrap_answer(op, v.clone()) {
                let case = Case::from_value(&inner);
                let events: Vec<SecurityEvent> = match &inner {
                    Value::Array(items) => {
                        items.iter().filter_map(SecurityEvent::from_value).collect()
                    }
                    other => SecurityEvent::from_value(other).into_iter().collect(),
                };
                if let Some(case) = case {
                    let _ = Converter::new(ConvertOptions::default()).case_bundle(&case, &events);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn repair_never_panics_and_grows_at_most_sixfold(body in ".{0,400}") {
        if let Some(fixed) = repair_json(&body) {
            prop_assert!(fixed.len() <= body.len() * MAX_GROWTH, "{} -> {}", body.len(), fixed.len());
        }
    }

    #[test]
    fn repair_leaves_valid_json_alone(v in any_json()) {
        let text = v.to_string();
        prop_assert_eq!(repair_json(&text), None);
        prop_assert_eq!(parse_json(&text).ok(), Some(v));
    }

    #[test]
    fn mutated_fixtures_never_panic_the_reader(
        which in any::<prop::sample::Index>(),
        muts in prop::collection::vec(mutation(), 1..6),
    ) {
        let all = fixtures();
        let seed = which.get(&all).clone();
        let body = apply(seed, &muts);
        read_like_the_client(&body);
        if let Some(fixed) = repair_json(&body) {
            prop_assert!(fixed.len() <= body.len() * MAX_GROWTH);
        }
    }

    #[test]
    fn arbitrary_text_never_panics_the_reader(body in ".{0,300}") {
        read_like_the_client(&body);
    }
}

/// Arbitrary JSON values (bounded depth and size).
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn every_fixture_reads_without_mutation() {
    for body in fixtures() {
        read_like_the_client(&body);
    }
}
