//! Directory delivery: file naming, envelope, atomic write, retention; no platform needed.

use std::fs;
use std::path::{Path, PathBuf};

use arcsight_incidents::delivery::{
    DeliveryError, DirectoryDelivery, DirectoryIdentity, Sink, file_prefix,
};
use arcsight_incidents::stix::{Bundle, Identity, StixObject, Tlp};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};

/// 2026-03-04T05:06:07Z, whose unix time is 1772600767.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap()
}

fn identity(applicant: Option<&str>) -> DirectoryIdentity {
    DirectoryIdentity {
        applicant_id: applicant.map(str::to_owned),
        connector_id: "5c7e3b0a-connector".into(),
        name: "ArcSight Incidents".into(),
        scope: vec!["incident".into(), "case-incident".into()],
        validate_before_import: false,
    }
}

fn bundle() -> Bundle {
    Bundle::with_id(
        "bundle--0f6a4b7e-2f56-4a0e-9a38-5b9f6c4d1a11".into(),
        vec![
            StixObject::Identity(Identity::arcsight_author()),
            StixObject::MarkingDefinition(Tlp::Red.marking()),
        ],
    )
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "arcsight-dir-{tag}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    fs::create_dir_all(&d).unwrap();
    d
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn the_file_is_named_after_the_connector_and_time_and_holds_the_envelope() {
    let dir = tempdir("name");
    let d = DirectoryDelivery::new(&dir, 7, identity(Some("88ec0c6a-user")));
    let b = bundle();
    let report = d.write_at(&d.envelope(&b), now()).unwrap();
    let expected = dir.join("arcsight_incidents-20260304-050607-1772600767.json");
    assert_eq!(report.path.as_deref(), Some(expected.as_path()));
    assert_eq!(
        names(&dir),
        vec!["arcsight_incidents-20260304-050607-1772600767.json"]
    );
    let text = fs::read(&expected).unwrap();
    assert_eq!(report.bytes, text.len() as u64);
    let v: Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(v["bundle_type"], "DIRECTORY_BUNDLE");
    assert_eq!(v["applicant_id"], "88ec0c6a-user");
    assert_eq!(
        v["connector"],
        json!({"id": "5c7e3b0a-connector", "name": "ArcSight Incidents", "type": "EXTERNAL_IMPORT",
               "scope": "incident,case-incident", "auto": false, "validate_before_import": false})
    );
    assert_eq!(v["entities_types"], json!([]));
    assert_eq!(v["update"], false);
    let back: Bundle = serde_json::from_value(v["bundle"].clone()).unwrap();
    assert_eq!(back, b, "the whole bundle, unsplit");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn two_deliveries_in_the_same_second_get_distinct_files() {
    let dir = tempdir("same-second");
    let d = DirectoryDelivery::new(&dir, 0, identity(None));
    let first = d.write_at(b"{\"n\":1}", now()).unwrap().path.unwrap();
    let second = d.write_at(b"{\"n\":2}", now()).unwrap().path.unwrap();
    let third = d.write_at(b"{\"n\":3}", now()).unwrap().path.unwrap();
    assert_eq!(
        names(&dir),
        vec![
            "arcsight_incidents-20260304-050607-1772600767-1.json",
            "arcsight_incidents-20260304-050607-1772600767-2.json",
            "arcsight_incidents-20260304-050607-1772600767.json",
        ],
        "no .tmp file is left behind either"
    );
    assert_eq!(fs::read(first).unwrap(), b"{\"n\":1}");
    assert_eq!(fs::read(second).unwrap(), b"{\"n\":2}");
    assert_eq!(fs::read(third).unwrap(), b"{\"n\":3}");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn retention_deletes_only_our_own_old_files() {
    let dir = tempdir("retention");
    let day = 86_400;
    let t = now().timestamp();
    let ours_old = format!("arcsight_incidents-20260224-000000-{}.json", t - 8 * day);
    let ours_old_counter = format!("arcsight_incidents-20260224-000000-{}-3.json", t - 8 * day);
    let ours_recent = format!("arcsight_incidents-20260228-000000-{}.json", t - 6 * day);
    let foreign = format!("other_connector-20260101-000000-{}.json", t - 60 * day);
    let lookalike = "arcsight_incidents-notes.json".to_owned();
    let tmp_old = format!(
        "arcsight_incidents-20260101-000000-{}.json.tmp",
        t - 60 * day
    );
    for n in [
        &ours_old,
        &ours_old_counter,
        &ours_recent,
        &foreign,
        &lookalike,
        &tmp_old,
    ] {
        fs::write(dir.join(n), b"{}").unwrap();
    }
    let keep_all = DirectoryDelivery::new(&dir, 0, identity(None));
    assert_eq!(
        keep_all.apply_retention(now()).unwrap(),
        0,
        "0 days keeps everything"
    );

    let d = DirectoryDelivery::new(&dir, 7, identity(None));
    let written = d.write_at(b"{}", now()).unwrap().path.unwrap();
    let left = names(&dir);
    assert!(
        !left.contains(&ours_old) && !left.contains(&ours_old_counter),
        "{left:?}"
    );
    for kept in [&ours_recent, &foreign, &lookalike, &tmp_old] {
        assert!(left.contains(kept), "{kept} must stay: {left:?}");
    }
    assert!(written.exists());
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_unwritable_target_is_a_typed_error() {
    let dir = tempdir("unwritable");
    let not_a_dir = dir.join("file");
    fs::write(&not_a_dir, b"x").unwrap();
    let d = DirectoryDelivery::new(&not_a_dir, 7, identity(None));
    let err = d.write_at(b"{}", now()).unwrap_err();
    assert!(matches!(err, DeliveryError::Io { .. }), "{err:?}");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn names_are_lowercased_underscored_and_cannot_escape_the_directory() {
    assert_eq!(file_prefix("ArcSight Incidents"), "arcsight_incidents");
    assert_eq!(file_prefix("../Evil/Name"), ".._evil_name");
}

#[tokio::test]
async fn delivery_works_with_no_platform_through_the_trait() {
    let dir = tempdir("any");
    let mut d = DirectoryDelivery::new(dir.join("sub"), 7, identity(None));
    let b = bundle();
    assert_eq!(
        d.expectations(&b),
        0,
        "nothing is queued, the work expects nothing"
    );
    let report = d.deliver(&b, None).await.unwrap();
    let path = report.path.unwrap();
    assert!(
        path.starts_with(dir.join("sub")),
        "the directory is created on demand"
    );
    let v: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert!(v["applicant_id"].is_null(), "no registration, no applicant");
    assert_eq!(v["bundle"]["id"], b.id.as_str());
    fs::remove_dir_all(dir).unwrap();
}
