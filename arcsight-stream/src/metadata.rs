//! `__metadata__/`, the sample configuration and the README's settings table of the stream
//! connector: `connector_runtime::metadata` generates them from the settings table ([`DEFS`])
//! and the [`MANIFEST`]; tests check the committed files equal them. The repository's
//! `docker-compose.yml` holds both connectors: the import connector's `metadata` writes it,
//! with this connector's service from [`compose_service`].

use std::path::Path;

use connector_runtime::metadata as runtime;
use connector_runtime::metadata::Manifest;
use connector_runtime::settings::Def;

use crate::manifest::MANIFEST;
use crate::settings::defs::DEFS;

/// This connector's identity and settings table, for the repository's compose file.
pub fn compose_service() -> (&'static Manifest, &'static [Def]) {
    (&MANIFEST, DEFS)
}

/// `readme` with the stream connector's settings and differences tables regenerated; `None`
/// when the markers of either are missing.
pub fn readme_with_settings(readme: &str) -> Option<String> {
    let settings = runtime::settings_table(&MANIFEST, DEFS);
    let readme = runtime::readme_with_table(readme, &MANIFEST, "settings", &settings)?;
    runtime::readme_with_table(
        &readme,
        &MANIFEST,
        "differences",
        &crate::settings::compat::table(),
    )
}

/// Every generated file, relative to the crate's directory (`arcsight-stream/`).
pub fn files() -> Vec<(&'static str, String)> {
    runtime::files(&MANIFEST, DEFS)
}

/// Writes every generated file under `root` (the crate's directory), and the README's table
/// in `readme` when it has the markers.
pub fn write_all(root: &Path, readme: Option<&Path>) -> std::io::Result<()> {
    runtime::write_files(root, &files())?;
    if let Some(readme) = readme
        && let Ok(current) = std::fs::read_to_string(readme)
        && let Some(updated) = readme_with_settings(&current)
    {
        std::fs::write(readme, updated)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_is_the_python_connector_s_in_its_identity() {
        let m = runtime::manifest_json(&MANIFEST);
        assert_eq!(m["slug"], "arcsight");
        assert_eq!(m["title"], "ArcSight");
        assert_eq!(m["container_type"], "STREAM");
        assert_eq!(m["support_version"], ">=7.260701.0");
        assert_eq!(m["max_confidence_level"], 50);
        assert_eq!(m["manager_supported"], true);
        assert_eq!(m["verified"], false);
        assert_eq!(m["license_type"], "Commercial");
        assert_eq!(m["use_cases"][0], "Detection & Response Enablement");
        assert_eq!(m["solution_categories"][0], "SIEM & Security Analytics");
    }

    #[test]
    fn the_schema_requires_what_the_python_one_requires_and_hides_secrets() {
        let schema = runtime::config_schema(&MANIFEST, DEFS);
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            required,
            [
                "OPENCTI_URL",
                "OPENCTI_TOKEN",
                "CONNECTOR_LIVE_STREAM_ID",
                "ARCSIGHT_API_BASE_URL",
                "ARCSIGHT_USERNAME",
                "ARCSIGHT_PASSWORD",
                "ARCSIGHT_ACTIVE_LIST_ID"
            ]
        );
        for secret in ["ARCSIGHT_PASSWORD", "OPENCTI_TOKEN"] {
            assert_eq!(schema["properties"][secret]["writeOnly"], true, "{secret}");
            assert_eq!(schema["properties"][secret]["format"], "password");
        }
        assert!(schema["properties"].get("CONNECTOR_ID").is_none());
        assert_eq!(
            schema["$id"],
            "https://www.filigran.io/connectors/arcsight_config.schema.json"
        );
        let p = &schema["properties"];
        assert_eq!(p["ARCSIGHT_VALUE_COLUMN"]["default"], "value");
        assert_eq!(p["ARCSIGHT_SSL_VERIFY"]["default"], true);
        assert_eq!(p["CONNECTOR_LIVE_STREAM_LISTEN_DELETE"]["default"], true);
        assert_eq!(p["CONNECTOR_LIVE_STREAM_NO_DEPENDENCIES"]["default"], true);
        assert_eq!(p["CONNECTOR_NAME"]["default"], "ArcSight");
        assert_eq!(p["CONNECTOR_LOG_LEVEL"]["default"], "error");
        assert_eq!(p["CONNECTOR_METRICS_PORT"]["default"], 9096);
    }

    #[test]
    fn the_sample_is_loadable_yaml_with_every_key() {
        let sample = runtime::config_sample(&MANIFEST, DEFS);
        let cfg = config::Config::builder()
            .add_source(config::File::from_str(&sample, config::FileFormat::Yaml))
            .build()
            .unwrap();
        for def in DEFS.iter().filter(|d| d.default.is_some() || d.required) {
            assert!(
                cfg.get::<config::Value>(def.yml).is_ok(),
                "{} missing",
                def.yml
            );
        }
    }
}
