//! STIX 2.1 objects as OpenCTI reads them, pycti-compatible ids, TLP markings and bundles.
//!
//! Knows nothing of ESM. Objects are typed structs serialised with only the fields that carry a
//! value, in the field order the Python connector emits, so that a bundle of ours diffs cleanly
//! against one of the reference.

pub mod ids;

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use ids::{
    case_incident_id, deterministic_id, flat_id, identity_id, incident_id, marking_definition_id,
    relationship_id, user_account_id, value_observable_id,
};

/// The only spec version we emit.
pub(crate) const SPEC_VERSION: &str = "2.1";

/// `created` of our author identity: fixed so that every run emits byte-identical objects
/// (the reference stamps "now" each run, a known defect).
pub const AUTHOR_CREATED: &str = "2020-01-01T00:00:00.000Z";

/// `created` of the TLP marking definitions, as the STIX 2.1 standard TLP objects carry.
pub(crate) const TLP_CREATED: &str = "2017-01-20T00:00:00.000Z";

/// The timestamp used where the source has none (the reference's fallback).
pub(crate) const EPOCH: &str = "1970-01-01T00:00:00.000Z";

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, milliseconds truncated, as the reference writes timestamps.
pub(crate) fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A Traffic Light Protocol level, as accepted by `ARCSIGHT_INCIDENTS_TLP_LEVEL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Tlp {
    Clear,
    White,
    Green,
    #[default]
    Amber,
    AmberStrict,
    Red,
}

impl Tlp {
    pub(crate) const ALL: [Tlp; 6] = [
        Tlp::Clear,
        Tlp::White,
        Tlp::Green,
        Tlp::Amber,
        Tlp::AmberStrict,
        Tlp::Red,
    ];

    /// The setting's spelling: `clear`, `white`, `green`, `amber`, `amber+strict`, `red`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tlp::Clear => "clear",
            Tlp::White => "white",
            Tlp::Green => "green",
            Tlp::Amber => "amber",
            Tlp::AmberStrict => "amber+strict",
            Tlp::Red => "red",
        }
    }

    /// The marking's name, e.g. `TLP:AMBER+STRICT`.
    pub(crate) fn marking_name(self) -> &'static str {
        match self {
            Tlp::Clear => "TLP:CLEAR",
            Tlp::White => "TLP:WHITE",
            Tlp::Green => "TLP:GREEN",
            Tlp::Amber => "TLP:AMBER",
            Tlp::AmberStrict => "TLP:AMBER+STRICT",
            Tlp::Red => "TLP:RED",
        }
    }

    /// Parses a marking name (`TLP:GREEN`, any case).
    pub(crate) fn from_marking_name(name: &str) -> Option<Tlp> {
        let rest = name
            .get(..4)?
            .eq_ignore_ascii_case("tlp:")
            .then(|| &name[4..])?;
        rest.parse().ok()
    }

    /// The fixed id OpenCTI (and pycti) use for this TLP level.
    pub fn marking_id(self) -> &'static str {
        match self {
            Tlp::Clear | Tlp::White => "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
            Tlp::Green => "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
            Tlp::Amber => "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
            Tlp::AmberStrict => "marking-definition--826578e1-40ad-459f-bc73-ede076f81f37",
            Tlp::Red => "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
        }
    }

    /// The marking-definition object, shaped as the reference emits it but with a fixed
    /// `created`. CLEAR and AMBER+STRICT are OpenCTI statement markings; the others are the
    /// STIX 2.1 standard TLP objects.
    pub fn marking(self) -> MarkingDefinition {
        let (definition_type, definition, name, x_def_type, x_def) = match self {
            Tlp::Clear | Tlp::AmberStrict => (
                "statement",
                MarkingContent::Statement {
                    statement: "custom".into(),
                },
                None,
                Some("TLP".to_owned()),
                Some(self.marking_name().to_owned()),
            ),
            Tlp::White | Tlp::Green | Tlp::Amber | Tlp::Red => (
                "tlp",
                MarkingContent::Tlp {
                    tlp: self.as_str().to_owned(),
                },
                Some(self.marking_name().to_owned()),
                None,
                None,
            ),
        };
        MarkingDefinition {
            spec_version: SPEC_VERSION.into(),
            id: self.marking_id().into(),
            created: TLP_CREATED.into(),
            definition_type: definition_type.into(),
            name,
            definition,
            x_opencti_definition: x_def,
            x_opencti_definition_type: x_def_type,
        }
    }
}

impl fmt::Display for Tlp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a TLP level: names the accepted values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not one of clear, white, green, amber, amber+strict, red")]
pub struct InvalidTlp(pub String);

impl FromStr for Tlp {
    type Err = InvalidTlp;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lowered = s.trim().to_ascii_lowercase();
        Tlp::ALL
            .into_iter()
            .find(|t| t.as_str() == lowered)
            .ok_or_else(|| InvalidTlp(s.to_owned()))
    }
}

/// `{"source_name": ..., "external_id": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalReference {
    pub(crate) source_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub(crate) spec_version: String,
    pub id: String,
    pub(crate) created: String,
    pub(crate) modified: String,
    pub(crate) name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
    pub(crate) identity_class: String,
}

impl Identity {
    /// The author of everything we import: the organisation `ArcSight`, with fixed timestamps.
    pub fn arcsight_author() -> Identity {
        Identity {
            spec_version: SPEC_VERSION.into(),
            id: identity_id("ArcSight", "organization"),
            created: AUTHOR_CREATED.into(),
            modified: AUTHOR_CREATED.into(),
            name: "ArcSight".into(),
            description: Some("Cases imported from ArcSight ESM.".into()),
            identity_class: "organization".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum MarkingContent {
    Tlp { tlp: String },
    Statement { statement: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkingDefinition {
    pub(crate) spec_version: String,
    pub id: String,
    pub(crate) created: String,
    pub(crate) definition_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    pub(crate) definition: MarkingContent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) x_opencti_definition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) x_opencti_definition_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub spec_version: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by_ref: Option<String>,
    pub created: String,
    pub modified: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_references: Vec<ExternalReference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub object_marking_refs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseIncident {
    pub spec_version: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by_ref: Option<String>,
    pub created: String,
    pub modified: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_references: Vec<ExternalReference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub object_refs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub object_marking_refs: Vec<String>,
}

/// ipv4-addr, ipv6-addr and OpenCTI's custom hostname: a `value` and nothing else of note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueObservable {
    pub spec_version: String,
    pub id: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub object_marking_refs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_opencti_created_by_ref: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAccount {
    pub(crate) spec_version: String,
    pub(crate) id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) account_login: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) object_marking_refs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) x_opencti_created_by_ref: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relationship {
    pub spec_version: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    pub relationship_type: String,
    pub source_ref: String,
    pub target_ref: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub object_marking_refs: Vec<String>,
}

/// Every object type we emit, tagged by its STIX `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum StixObject {
    #[serde(rename = "identity")]
    Identity(Identity),
    #[serde(rename = "marking-definition")]
    MarkingDefinition(MarkingDefinition),
    #[serde(rename = "incident")]
    Incident(Incident),
    #[serde(rename = "case-incident")]
    CaseIncident(CaseIncident),
    #[serde(rename = "ipv4-addr")]
    Ipv4Addr(ValueObservable),
    #[serde(rename = "ipv6-addr")]
    Ipv6Addr(ValueObservable),
    #[serde(rename = "hostname")]
    Hostname(ValueObservable),
    #[serde(rename = "user-account")]
    UserAccount(UserAccount),
    #[serde(rename = "relationship")]
    Relationship(Relationship),
}

impl StixObject {
    pub fn id(&self) -> &str {
        match self {
            StixObject::Identity(o) => &o.id,
            StixObject::MarkingDefinition(o) => &o.id,
            StixObject::Incident(o) => &o.id,
            StixObject::CaseIncident(o) => &o.id,
            StixObject::Ipv4Addr(o) | StixObject::Ipv6Addr(o) | StixObject::Hostname(o) => &o.id,
            StixObject::UserAccount(o) => &o.id,
            StixObject::Relationship(o) => &o.id,
        }
    }

    /// The STIX `type` string.
    pub fn type_name(&self) -> &'static str {
        match self {
            StixObject::Identity(_) => "identity",
            StixObject::MarkingDefinition(_) => "marking-definition",
            StixObject::Incident(_) => "incident",
            StixObject::CaseIncident(_) => "case-incident",
            StixObject::Ipv4Addr(_) => "ipv4-addr",
            StixObject::Ipv6Addr(_) => "ipv6-addr",
            StixObject::Hostname(_) => "hostname",
            StixObject::UserAccount(_) => "user-account",
            StixObject::Relationship(_) => "relationship",
        }
    }

    /// Every id this object references through a `*_ref` or `*_refs` property.
    pub(crate) fn refs(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        match self {
            StixObject::Identity(_) | StixObject::MarkingDefinition(_) => {}
            StixObject::Incident(o) => {
                out.extend(o.created_by_ref.as_deref());
                out.extend(o.object_marking_refs.iter().map(String::as_str));
            }
            StixObject::CaseIncident(o) => {
                out.extend(o.created_by_ref.as_deref());
                out.extend(o.object_marking_refs.iter().map(String::as_str));
                out.extend(o.object_refs.iter().map(String::as_str));
            }
            StixObject::Ipv4Addr(o) | StixObject::Ipv6Addr(o) | StixObject::Hostname(o) => {
                out.extend(o.x_opencti_created_by_ref.as_deref());
                out.extend(o.object_marking_refs.iter().map(String::as_str));
            }
            StixObject::UserAccount(o) => {
                out.extend(o.x_opencti_created_by_ref.as_deref());
                out.extend(o.object_marking_refs.iter().map(String::as_str));
            }
            StixObject::Relationship(o) => {
                out.extend(o.created_by_ref.as_deref());
                out.extend(o.object_marking_refs.iter().map(String::as_str));
                out.push(&o.source_ref);
                out.push(&o.target_ref);
            }
        }
        out
    }

    /// Drops every reference for which `keep` is false (pycti's "cleanup inconsistent bundle").
    /// Returns `false` when the object itself must be dropped: a relationship that lost its
    /// source or its target.
    pub(crate) fn retain_refs(&mut self, keep: &dyn Fn(&str) -> bool) -> bool {
        fn opt(r: &mut Option<String>, keep: &dyn Fn(&str) -> bool) {
            if r.as_deref().is_some_and(|id| !keep(id)) {
                *r = None;
            }
        }
        fn list(v: &mut Vec<String>, keep: &dyn Fn(&str) -> bool) {
            v.retain(|id| keep(id));
        }
        match self {
            StixObject::Identity(_) | StixObject::MarkingDefinition(_) => true,
            StixObject::Incident(o) => {
                opt(&mut o.created_by_ref, keep);
                list(&mut o.object_marking_refs, keep);
                true
            }
            StixObject::CaseIncident(o) => {
                opt(&mut o.created_by_ref, keep);
                list(&mut o.object_marking_refs, keep);
                list(&mut o.object_refs, keep);
                true
            }
            StixObject::Ipv4Addr(o) | StixObject::Ipv6Addr(o) | StixObject::Hostname(o) => {
                opt(&mut o.x_opencti_created_by_ref, keep);
                list(&mut o.object_marking_refs, keep);
                true
            }
            StixObject::UserAccount(o) => {
                opt(&mut o.x_opencti_created_by_ref, keep);
                list(&mut o.object_marking_refs, keep);
                true
            }
            StixObject::Relationship(o) => {
                opt(&mut o.created_by_ref, keep);
                list(&mut o.object_marking_refs, keep);
                keep(&o.source_ref) && keep(&o.target_ref)
            }
        }
    }
}

/// A STIX bundle: `{"type":"bundle","id":...,"spec_version":"2.1","objects":[...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "bundle")]
pub struct Bundle {
    pub id: String,
    #[serde(default = "spec_version_default")]
    pub(crate) spec_version: String,
    pub objects: Vec<StixObject>,
}

fn spec_version_default() -> String {
    SPEC_VERSION.into()
}

impl Bundle {
    /// A bundle with a fresh random (v4) id, as pycti creates one per run.
    pub fn new(objects: Vec<StixObject>) -> Bundle {
        Bundle::with_id(format!("bundle--{}", uuid::Uuid::new_v4()), objects)
    }

    pub fn with_id(id: String, objects: Vec<StixObject>) -> Bundle {
        Bundle {
            id,
            spec_version: SPEC_VERSION.into(),
            objects,
        }
    }

    /// Appends `objects`, skipping any whose id the bundle already holds.
    pub(crate) fn extend_dedup(&mut self, objects: impl IntoIterator<Item = StixObject>) {
        let mut seen: HashSet<String> = self.objects.iter().map(|o| o.id().to_owned()).collect();
        for o in objects {
            if seen.insert(o.id().to_owned()) {
                self.objects.push(o);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlp_parses_every_documented_spelling() {
        for t in Tlp::ALL {
            assert_eq!(t.as_str().parse::<Tlp>(), Ok(t));
            assert_eq!(t.as_str().to_uppercase().parse::<Tlp>(), Ok(t));
            assert_eq!(Tlp::from_marking_name(t.marking_name()), Some(t));
        }
        let err = "purple".parse::<Tlp>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"purple\" is not one of clear, white, green, amber, amber+strict, red"
        );
    }

    #[test]
    fn timestamps_truncate_to_milliseconds() {
        let t = DateTime::from_timestamp(1_708_550_478, 431_999_999).unwrap();
        assert_eq!(format_timestamp(&t), "2024-02-21T21:21:18.431Z");
    }

    #[test]
    fn times_before_1970_round_down_as_python_does() {
        // Python's datetime floors: one millisecond before the epoch is ...59.999, not ...59.000
        // (truncating toward zero would give the latter).
        let t = DateTime::from_timestamp_millis(-1).unwrap();
        assert_eq!(format_timestamp(&t), "1969-12-31T23:59:59.999Z");
        let t = DateTime::from_timestamp(-1, 999_999_999).unwrap();
        assert_eq!(format_timestamp(&t), "1969-12-31T23:59:59.999Z");
        let t = DateTime::from_timestamp_millis(-1_500).unwrap();
        assert_eq!(format_timestamp(&t), "1969-12-31T23:59:58.500Z");
    }

    #[test]
    fn objects_round_trip_with_their_type_tag() {
        let mut bundle = Bundle::with_id(
            "bundle--x".into(),
            vec![
                StixObject::Identity(Identity::arcsight_author()),
                StixObject::MarkingDefinition(Tlp::AmberStrict.marking()),
                StixObject::MarkingDefinition(Tlp::Green.marking()),
            ],
        );
        let text = serde_json::to_string(&bundle).unwrap();
        assert!(text.starts_with(r#"{"type":"bundle","id":"bundle--x","spec_version":"2.1""#));
        let back: Bundle = serde_json::from_str(&text).unwrap();
        assert_eq!(back, bundle);
        bundle.extend_dedup([StixObject::Identity(Identity::arcsight_author())]);
        assert_eq!(bundle.objects.len(), 3);
    }

    #[test]
    fn relationship_without_an_end_is_dropped() {
        let mut rel = StixObject::Relationship(Relationship {
            spec_version: SPEC_VERSION.into(),
            id: "relationship--1".into(),
            created_by_ref: Some("identity--a".into()),
            created: None,
            modified: None,
            relationship_type: "related-to".into(),
            source_ref: "incident--a".into(),
            target_ref: "ipv4-addr--a".into(),
            object_marking_refs: vec!["marking-definition--a".into()],
        });
        assert!(rel.retain_refs(&|id| id != "identity--a"));
        assert_eq!(rel.refs().len(), 3);
        assert!(!rel.retain_refs(&|id| id != "ipv4-addr--a"));
    }
}
