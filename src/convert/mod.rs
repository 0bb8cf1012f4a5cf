//! ESM cases and events -> STIX objects, with the reference connector's mapping rules.
//!
//! Pure: no I/O, no clock, no randomness, no panics. The same input always gives byte-identical
//! objects, which is what lets the sync loop re-send a case and have the platform update it in
//! place rather than duplicate it.

use std::collections::HashSet;
use std::net::IpAddr;

use crate::esm::model::{Case, Endpoint, SecurityEvent, Severity};
use crate::stix::{
    self, Bundle, CaseIncident, EPOCH, ExternalReference, Identity, Incident, Relationship,
    SPEC_VERSION, StixObject, Tlp, UserAccount, ValueObservable,
};

/// `source_name` of every external reference we write.
pub(crate) const SOURCE_NAME: &str = "ArcSight ESM";
const EVENT_DESCRIPTION: &str = "Security event imported from ArcSight ESM.";
const CASE_DESCRIPTION: &str = "Case imported from ArcSight ESM.";

/// What the operator chose: the marking, and whether events' addresses, host names and user
/// names become observables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvertOptions {
    pub tlp: Tlp,
    pub import_observables: bool,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            tlp: Tlp::Amber,
            import_observables: true,
        }
    }
}

/// Turns cases and their events into STIX objects.
#[derive(Debug, Clone)]
pub struct Converter {
    options: ConvertOptions,
    author_id: String,
    marking_id: &'static str,
}

impl Converter {
    pub fn new(options: ConvertOptions) -> Converter {
        Converter {
            options,
            author_id: Identity::arcsight_author().id,
            marking_id: options.tlp.marking_id(),
        }
    }

    /// The author identity and the TLP marking every bundle carries.
    pub fn common_objects(&self) -> [StixObject; 2] {
        [
            StixObject::Identity(Identity::arcsight_author()),
            StixObject::MarkingDefinition(self.options.tlp.marking()),
        ]
    }

    /// The objects of one case, in the reference's order: the event incidents (each followed,
    /// when observables are on, by its observables and `related-to` relationships), then the
    /// case-incident. Objects repeated across events appear once.
    pub fn convert_case(&self, case: &Case, events: &[SecurityEvent]) -> Vec<StixObject> {
        let mut out: Vec<StixObject> = Vec::with_capacity(events.len() * 2 + 1);
        let mut seen: HashSet<String> = HashSet::new();
        let mut refs: Vec<String> = Vec::with_capacity(events.len());
        let mut push = |obj: StixObject, out: &mut Vec<StixObject>, refs: &mut Vec<String>| {
            if seen.insert(obj.id().to_owned()) {
                if !matches!(obj, StixObject::CaseIncident(_)) {
                    refs.push(obj.id().to_owned());
                }
                out.push(obj);
            }
        };
        for event in events {
            let incident = self.incident(event);
            let incident_id = incident.id.clone();
            push(StixObject::Incident(incident), &mut out, &mut refs);
            if self.options.import_observables {
                for observable in self.observables(event) {
                    let rel = self.related_to(&incident_id, observable.id());
                    push(observable, &mut out, &mut refs);
                    push(StixObject::Relationship(rel), &mut out, &mut refs);
                }
            }
        }
        let case_incident = self.case_incident(case, refs);
        out.push(StixObject::CaseIncident(case_incident));
        out
    }

    /// One case as a bundle of its own, with the author and the marking: what the `convert`
    /// subcommand prints. The bundle id derives from the case-incident id so that converting the
    /// same input twice gives the same bytes.
    pub fn case_bundle(&self, case: &Case, events: &[SecurityEvent]) -> Bundle {
        let mut objects = self.convert_case(case, events);
        let case_id = objects
            .last()
            .map(|o| o.id().to_owned())
            .unwrap_or_default();
        objects.extend(self.common_objects());
        Bundle::with_id(
            stix::flat_id("bundle", &mut [("case", Some(&case_id))]),
            objects,
        )
    }

    /// Event -> incident.
    pub(crate) fn incident(&self, event: &SecurityEvent) -> Incident {
        let name = match (&event.name, &event.event_id) {
            (Some(name), _) => name.clone(),
            (None, Some(id)) => format!("ArcSight event {id}"),
            (None, None) => "ArcSight event".to_owned(),
        };
        let created = event.time.as_ref().map(stix::format_timestamp);
        let id_name = match &event.event_id {
            Some(id) => format!("{name} [{id}]"),
            None => name.clone(),
        };
        let id = stix::incident_id(&id_name, created.as_deref());
        let created = created.unwrap_or_else(|| EPOCH.to_owned());
        Incident {
            spec_version: SPEC_VERSION.into(),
            id,
            created_by_ref: Some(self.author_id.clone()),
            modified: created.clone(),
            created,
            name,
            description: Some(
                event
                    .message
                    .clone()
                    .unwrap_or_else(|| EVENT_DESCRIPTION.to_owned()),
            ),
            first_seen: event.start_time.as_ref().map(stix::format_timestamp),
            last_seen: event.end_time.as_ref().map(stix::format_timestamp),
            external_references: external_reference(event.event_id.as_deref()),
            object_marking_refs: vec![self.marking_id.to_owned()],
            incident_type: Some("alert".into()),
            severity: Some(event.severity.as_str().into()),
            source: Some(SOURCE_NAME.into()),
        }
    }

    /// The id of a case's case-incident (pycti's, from its name and creation time), without
    /// building the rest: the verification computes it for every delivered case.
    pub(crate) fn case_incident_id(&self, case: &Case) -> String {
        let name = case.name.as_deref().unwrap_or("ArcSight Case");
        let created = case.created.as_ref().map(stix::format_timestamp);
        let id_name = match &case.external_id {
            Some(ext) => format!("{name} [{ext}]"),
            None => name.to_owned(),
        };
        stix::case_incident_id(&id_name, created.as_deref())
    }

    /// Case -> case-incident containing `object_refs`.
    pub(crate) fn case_incident(&self, case: &Case, object_refs: Vec<String>) -> CaseIncident {
        let name = case
            .name
            .clone()
            .unwrap_or_else(|| "ArcSight Case".to_owned());
        let created = case.created.as_ref().map(stix::format_timestamp);
        let id = self.case_incident_id(case);
        let modified = case
            .modified
            .as_ref()
            .map(stix::format_timestamp)
            .or_else(|| created.clone())
            .unwrap_or_else(|| EPOCH.to_owned());
        let severity = case.severity.unwrap_or(Severity::Low);
        CaseIncident {
            spec_version: SPEC_VERSION.into(),
            id,
            created_by_ref: Some(self.author_id.clone()),
            created: created.unwrap_or_else(|| EPOCH.to_owned()),
            modified,
            name,
            description: Some(
                case.description
                    .clone()
                    .unwrap_or_else(|| CASE_DESCRIPTION.to_owned()),
            ),
            severity: Some(severity.as_str().into()),
            priority: Some(severity.priority().into()),
            external_references: external_reference(case.external_id.as_deref()),
            object_refs,
            object_marking_refs: vec![self.marking_id.to_owned()],
        }
    }

    /// The observables of an event: for its source then its destination, the IP address, the
    /// host name and the user name, in that order.
    pub(crate) fn observables(&self, event: &SecurityEvent) -> Vec<StixObject> {
        let mut out = Vec::new();
        for endpoint in [&event.source, &event.destination].into_iter().flatten() {
            self.endpoint_observables(endpoint, &mut out);
        }
        out
    }

    fn endpoint_observables(&self, ep: &Endpoint, out: &mut Vec<StixObject>) {
        let value = |kind: &str, v: String| ValueObservable {
            spec_version: SPEC_VERSION.into(),
            id: stix::value_observable_id(kind, &v),
            value: v,
            object_marking_refs: vec![self.marking_id.to_owned()],
            x_opencti_created_by_ref: Some(self.author_id.clone()),
        };
        match ep.ip {
            Some(IpAddr::V4(ip)) => {
                out.push(StixObject::Ipv4Addr(value("ipv4-addr", ip.to_string())))
            }
            Some(IpAddr::V6(ip)) => {
                out.push(StixObject::Ipv6Addr(value("ipv6-addr", ip.to_string())))
            }
            None => {}
        }
        if let Some(host) = &ep.host_name {
            out.push(StixObject::Hostname(value("hostname", host.clone())));
        }
        if let Some(user) = &ep.user_name {
            out.push(StixObject::UserAccount(UserAccount {
                spec_version: SPEC_VERSION.into(),
                id: stix::user_account_id(Some(user), None, None),
                account_login: Some(user.clone()),
                user_id: None,
                object_marking_refs: vec![self.marking_id.to_owned()],
                x_opencti_created_by_ref: Some(self.author_id.clone()),
            }));
        }
    }

    fn related_to(&self, incident_id: &str, observable_id: &str) -> Relationship {
        Relationship {
            spec_version: SPEC_VERSION.into(),
            id: stix::relationship_id("related-to", incident_id, observable_id, None, None),
            created_by_ref: Some(self.author_id.clone()),
            created: None,
            modified: None,
            relationship_type: "related-to".into(),
            source_ref: incident_id.to_owned(),
            target_ref: observable_id.to_owned(),
            object_marking_refs: vec![self.marking_id.to_owned()],
        }
    }
}

fn external_reference(id: Option<&str>) -> Vec<ExternalReference> {
    id.map(|id| ExternalReference {
        source_name: SOURCE_NAME.into(),
        external_id: Some(id.to_owned()),
        url: None,
    })
    .into_iter()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(v: serde_json::Value) -> SecurityEvent {
        SecurityEvent::from_value(&v).unwrap()
    }

    #[test]
    fn observables_are_linked_and_listed_in_the_case() {
        let conv = Converter::new(ConvertOptions::default());
        let case = Case::from_value(&json!({"resourceid": "c1", "name": "n"})).unwrap();
        let ev = event(json!({
            "eventId": 1, "name": "e",
            "source": {"address": 170524911, "userName": "alice"},
            "destination": {"addressAsBytes": "wKgBCg==", "hostName": "db01"}
        }));
        let objects = conv.convert_case(&case, &[ev.clone(), ev]);
        let types: Vec<_> = objects.iter().map(StixObject::type_name).collect();
        assert_eq!(
            types,
            [
                "incident",
                "ipv4-addr",
                "relationship",
                "user-account",
                "relationship",
                "ipv4-addr",
                "relationship",
                "hostname",
                "relationship",
                "case-incident"
            ]
        );
        let StixObject::CaseIncident(ci) = objects.last().unwrap() else {
            panic!("case-incident last")
        };
        assert_eq!(ci.object_refs.len(), objects.len() - 1);
    }

    #[test]
    fn no_observables_when_disabled() {
        let conv = Converter::new(ConvertOptions {
            tlp: Tlp::Red,
            import_observables: false,
        });
        let case = Case::default();
        let ev = event(json!({"source": {"address": 1, "hostName": "h"}}));
        let objects = conv.convert_case(&case, &[ev]);
        assert_eq!(objects.len(), 2);
    }

    #[test]
    fn first_and_last_seen_come_from_start_and_end() {
        let conv = Converter::new(ConvertOptions::default());
        let inc = conv.incident(&event(
            json!({"startTime": 1_500_000_000_000i64, "endTime": 1_500_000_001_000i64}),
        ));
        assert_eq!(inc.first_seen.as_deref(), Some("2017-07-14T02:40:00.000Z"));
        assert_eq!(inc.last_seen.as_deref(), Some("2017-07-14T02:40:01.000Z"));
        assert_eq!(inc.created, "2017-07-14T02:40:01.000Z");
    }
}
