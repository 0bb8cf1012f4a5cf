//! Properties: conversion never panics on any JSON, and ids behave as pycti's do.

use arcsight_incidents::convert::{ConvertOptions, Converter};
use arcsight_incidents::esm::model::{Case, SecurityEvent};
use arcsight_incidents::stix::{self, Tlp};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("4.9E-324"),
            Just("2024-05-02T10:20:30.123+02:00"),
            Just("1709490150160"),
            Just("wKgBCg=="),
            Just("IAENuAAAAAAAAAAAAAAAAQ=="),
            Just("CATASTROPHIC"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("eventId".to_owned()),
                        Just("name".to_owned()),
                        Just("endTime".to_owned()),
                        Just("startTime".to_owned()),
                        Just("priority".to_owned()),
                        Just("source".to_owned()),
                        Just("destination".to_owned()),
                        Just("address".to_owned()),
                        Just("addressAsBytes".to_owned()),
                        Just("hostName".to_owned()),
                        Just("userName".to_owned()),
                        Just("baseEventIds".to_owned()),
                        Just("eventIDs".to_owned()),
                        Just("createdTimestamp".to_owned()),
                        Just("consequenceSeverity".to_owned()),
                        "[a-z]{1,6}",
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    /// Any JSON as a case and as events: decoding and conversion never panic, and the case's
    /// bundle always ends with its case-incident, author and marking.
    #[test]
    fn conversion_never_panics(case in json_value(), events in prop::collection::vec(json_value(), 0..4)) {
        let conv = Converter::new(ConvertOptions { tlp: Tlp::Amber, import_observables: true });
        let case = Case::from_value(&case).unwrap_or_default();
        let events: Vec<SecurityEvent> = events.iter().filter_map(SecurityEvent::from_value).collect();
        let bundle = conv.case_bundle(&case, &events);
        let n = bundle.objects.len();
        prop_assert!(n >= 3);
        prop_assert_eq!(bundle.objects[n - 3].type_name(), "case-incident");
        prop_assert!(serde_json::to_string(&bundle).is_ok());
    }

    /// pycti strips and lower-cases names before hashing: surrounding whitespace (Python's
    /// idea of it) and case never change an id.
    #[test]
    fn ids_are_stable_under_pycti_normalisation(
        name in "[A-Za-zÉé0-9 ]{1,20}",
        pad_left in prop::sample::select(vec!["", " ", "\t", "\u{1c}", "\u{a0}", "\n "]),
        pad_right in prop::sample::select(vec!["", " ", "\u{1f}", "\u{3000}"]),
        created in prop::option::of("20[0-9]{2}-0[1-9]-1[0-9]T00:00:00.000Z"),
    ) {
        let base = stix::incident_id(&name, created.as_deref());
        let padded = format!("{pad_left}{}{pad_right}", name.to_uppercase());
        prop_assert_eq!(stix::incident_id(&padded, created.as_deref()), base.clone());
        let case = stix::case_incident_id(&padded, created.as_deref());
        prop_assert_eq!(
            case.trim_start_matches("case-incident--"),
            base.trim_start_matches("incident--")
        );
    }

    /// Different seeds give different ids.
    #[test]
    fn different_seeds_give_different_ids(a in "[a-z]{1,12}", b in "[a-z]{1,12}") {
        prop_assume!(a != b);
        prop_assert_ne!(stix::incident_id(&a, None), stix::incident_id(&b, None));
        prop_assert_ne!(stix::incident_id(&a, None), stix::incident_id(&a, Some("2024-01-01T00:00:00.000Z")));
    }
}
