//! `__metadata__/`, the sample configuration, the compose file and the README tables of this
//! connector: `connector_runtime::metadata` generates them from the settings table
//! ([`DEFS`]) and the [`MANIFEST`]; tests check the committed files equal them.

use std::path::Path;

use connector_runtime::metadata as runtime;

use crate::manifest::MANIFEST;
use crate::settings::defs::DEFS;

/// `readme` with the settings table and the differences table regenerated; `None` when the
/// markers of either are missing.
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

/// Every generated file, relative to the repository root.
pub fn files() -> Vec<(&'static str, String)> {
    let mut files = runtime::files(&MANIFEST, DEFS);
    // The repository's compose file: this connector's service, then the stream connector's
    // (behind a profile).
    files.push((
        "docker-compose.yml",
        runtime::compose(&[
            (&MANIFEST, DEFS),
            arcsight_stream::metadata::compose_service(),
        ]),
    ));
    files
}

/// Writes every generated file under `root`.
pub(crate) fn write_all(root: &Path) -> std::io::Result<()> {
    runtime::write_files(root, &files())?;
    let readme = root.join("README.md");
    if let Ok(current) = std::fs::read_to_string(&readme)
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
    fn secrets_are_write_only_passwords() {
        let schema = runtime::config_schema(&MANIFEST, DEFS);
        let pw = &schema["properties"]["ARCSIGHT_INCIDENTS_PASSWORD"];
        assert_eq!(pw["format"], "password");
        assert_eq!(pw["writeOnly"], true);
        assert_eq!(schema["properties"]["MQ_PASS"]["writeOnly"], true);
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(required.contains(&"ARCSIGHT_INCIDENTS_API_BASE_URL"));
        // As in the Python connector's schema.
        assert!(required.contains(&"OPENCTI_URL") && required.contains(&"OPENCTI_TOKEN"));
        assert_eq!(schema["properties"]["OPENCTI_TOKEN"]["writeOnly"], true);
        assert!(schema["properties"].get("CONNECTOR_ID").is_none());
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
