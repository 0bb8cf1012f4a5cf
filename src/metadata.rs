//! `__metadata__/` and the sample configuration, generated from the settings table.
//!
//! The OpenCTI connector manager reads `connector_config_schema.json`; operators read
//! `CONNECTOR_CONFIG_DOC.md` and `config.yml.sample`. Generating all three from
//! `crate::settings::DEFS` (and testing that the committed files equal the generated ones)
//! means they can never drift from what the code actually reads.

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::settings::{DEFS, Def, Kind};

/// Settings the platform's connector manager fills in itself: left out of the manifest schema,
/// as the Python connector's schema does (it lists OPENCTI_URL and OPENCTI_TOKEN).
const MANAGED: &[&str] = &["CONNECTOR_ID"];

/// The placeholder of a setting the operator must fill in: distinct for each, so that an error
/// names the one left (and no two settings share a value a secret's redaction would hide).
pub(crate) fn placeholder(env: &str) -> String {
    format!(
        "{}-{}",
        crate::settings::PLACEHOLDER,
        env.to_ascii_lowercase().replace('_', "-")
    )
}

fn schema_type(def: &Def) -> Value {
    let mut m = Map::new();
    match def.kind {
        Kind::Bool => {
            m.insert("type".into(), "boolean".into());
        }
        Kind::Int { min, max } => {
            m.insert("type".into(), "integer".into());
            m.insert("minimum".into(), min.into());
            m.insert("maximum".into(), max.into());
        }
        Kind::Float => {
            m.insert("type".into(), "number".into());
            m.insert("minimum".into(), 0.into());
        }
        Kind::Enum(values) => {
            m.insert("type".into(), "string".into());
            m.insert(
                "enum".into(),
                values.iter().map(|v| Value::from(*v)).collect(),
            );
        }
        Kind::Url => {
            m.insert("type".into(), "string".into());
            m.insert("format".into(), "uri".into());
        }
        Kind::Duration => {
            m.insert("type".into(), "string".into());
            m.insert("format".into(), "duration".into());
        }
        Kind::Secret => {
            m.insert("type".into(), "string".into());
            m.insert("format".into(), "password".into());
            m.insert("writeOnly".into(), true.into());
        }
        Kind::List => {
            m.insert("type".into(), "array".into());
            m.insert("items".into(), json!({"type": "string"}));
        }
        Kind::Text | Kind::Path => {
            m.insert("type".into(), "string".into());
        }
    }
    m.insert("description".into(), def.description.into());
    if let Some(d) = def.default {
        let v = match def.kind {
            Kind::Bool => Value::Bool(d == "true"),
            Kind::Int { .. } => d.parse::<i64>().map(Value::from).unwrap_or(d.into()),
            Kind::Float => d.parse::<f64>().map(Value::from).unwrap_or(d.into()),
            _ => d.into(),
        };
        m.insert("default".into(), v);
    }
    Value::Object(m)
}

/// `__metadata__/connector_config_schema.json`.
pub(crate) fn config_schema() -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for def in DEFS.iter().filter(|d| !MANAGED.contains(&d.env)) {
        properties.insert(def.env.into(), schema_type(def));
        if def.required {
            required.push(Value::from(def.env));
        }
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://www.filigran.io/connectors/arcsight-incidents_config.schema.json",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": true,
    })
}

/// `__metadata__/connector_manifest.json`: the Python connector's, where it describes the
/// same connector (title, logo, use cases, categories, platform versions), ours where it
/// describes this build (image, description, source).
pub(crate) fn manifest() -> Value {
    json!({
        "title": "ArcSight Incidents",
        "slug": "arcsight-incidents",
        "description": "Imports ArcSight ESM cases as OpenCTI Case-Incidents and their security events as Incidents, with the events' addresses, host names and user names as observables. Incremental: only new or modified cases are sent. A drop-in replacement for the Python ArcSight Incidents connector (same settings, same object ids).",
        "short_description": "Import ArcSight ESM cases (Case-Incidents) and their events (Incidents) into OpenCTI.",
        "logo": "__metadata__/logo.png",
        "use_cases": ["Detection & Response Enablement"],
        "solution_categories": ["SIEM & Security Analytics"],
        "license_type": "Commercial",
        "contact": null,
        "verified": false,
        "last_verified_date": null,
        "playbook_supported": false,
        "max_confidence_level": 50,
        "support_version": ">=7.260701.0",
        "subscription_link": "https://www.opentext.com/products/arcsight-enterprise-security-manager",
        "source_code": "https://github.com/arcsight-incidents/arcsight-incidents",
        "manager_supported": true,
        "container_version": "rolling",
        "container_image": "arcsight-incidents/connector-arcsight-incidents",
        "container_type": "EXTERNAL_IMPORT",
    })
}

fn kind_doc(kind: Kind) -> String {
    match kind {
        Kind::Text | Kind::Path => "string".into(),
        Kind::List => "list (YAML list or comma-separated string)".into(),
        Kind::Float => "number (0 or more, decimals allowed)".into(),
        Kind::Secret => "string (secret)".into(),
        Kind::Url => "string (URL)".into(),
        Kind::Bool => "boolean".into(),
        Kind::Int { min, max } => format!("integer ({min}..{max})"),
        Kind::Duration => "duration (ISO-8601, HH:MM:SS or seconds)".into(),
        Kind::Enum(values) => format!("one of `{}`", values.join("`, `")),
    }
}

/// `__metadata__/CONNECTOR_CONFIG_DOC.md`: every setting as a table.
pub(crate) fn config_doc() -> String {
    let mut out = String::from(
        "# Connector configuration\n\n\
         Generated by `arcsight-incidents metadata` from the settings table; do not edit.\n\
         Environment variables win over `config.yml` keys, key by key. An empty value counts as unset.\n\n\
         | Environment variable | config.yml key | Type | Required | Default | Description |\n\
         |---|---|---|---|---|---|\n",
    );
    for def in DEFS {
        let name = if def.env_aliases.is_empty() {
            format!("`{}`", def.env)
        } else {
            format!("`{}` (alias `{}`)", def.env, def.env_aliases.join("`, `"))
        };
        out.push_str(&format!(
            "| {name} | `{}` | {} | {} | {} | {} |\n",
            def.yml,
            kind_doc(def.kind),
            if def.required { "yes" } else { "no" },
            def.default.map(|d| format!("`{d}`")).unwrap_or_default(),
            def.description.replace('|', "\\|"),
        ));
    }
    out
}

/// The settings table alone (the body of `CONNECTOR_CONFIG_DOC.md`), for the README.
pub(crate) fn settings_table() -> String {
    let doc = config_doc();
    let start = doc.find("| Environment variable").unwrap_or(0);
    doc[start..].to_owned()
}

/// Markers around the generated settings table in README.md.
pub(crate) const README_BEGIN: &str =
    "<!-- settings table: generated by `arcsight-incidents metadata` -->\n";
pub(crate) const README_END: &str = "<!-- end of settings table -->";

/// Markers around the generated table of differences with the Python connector.
pub(crate) const README_DIFF_BEGIN: &str =
    "<!-- differences table: generated by `arcsight-incidents metadata` -->\n";
pub(crate) const README_DIFF_END: &str = "<!-- end of differences table -->";

/// `text` with what lies between `begin` and `end` replaced by `body`; `None` when a marker is
/// missing.
fn replace_between(text: &str, begin: &str, end: &str, body: &str) -> Option<String> {
    let start = text.find(begin)? + begin.len();
    let stop = start + text[start..].find(end)?;
    Some(format!("{}{}{}", &text[..start], body, &text[stop..]))
}

/// `readme` with the settings table and the differences table regenerated; `None` when the
/// markers of either are missing.
pub fn readme_with_settings(readme: &str) -> Option<String> {
    let readme = replace_between(readme, README_BEGIN, README_END, &settings_table())?;
    replace_between(
        &readme,
        README_DIFF_BEGIN,
        README_DIFF_END,
        &crate::settings::compat::table(),
    )
}

/// `config.yml.sample`: every setting, grouped by section, with comments.
pub(crate) fn config_sample() -> String {
    let mut out = String::from(
        "# arcsight-incidents configuration. Every key can also be set by its environment\n\
         # variable (shown in each comment), which wins over this file.\n",
    );
    let mut section = "";
    for def in DEFS {
        let (sec, key) = def.yml.split_once('.').unwrap_or(("", def.yml));
        if sec != section {
            out.push_str(&format!("\n{sec}:\n"));
            section = sec;
        }
        out.push_str(&format!(
            "  # {} ({}{})\n",
            def.description,
            def.env,
            if def.required { ", required" } else { "" }
        ));
        let value = match (def.default, def.kind, def.required) {
            (Some(d), Kind::Enum(_) | Kind::Text | Kind::Duration | Kind::List, _) => {
                format!("'{d}'")
            }
            (Some(d), _, _) => d.to_owned(),
            (None, _, true) => format!("'{}'", placeholder(def.env)),
            (None, _, false) => {
                out.push_str(&format!("  # {key}:\n"));
                continue;
            }
        };
        out.push_str(&format!("  {key}: {value}\n"));
    }
    out
}

/// Values the compose example sets differently from the defaults, to show a feature.
const COMPOSE_VALUES: &[(&str, &str)] = &[
    ("OPENCTI_URL", "http://opencti:8080"),
    // The healthcheck below asks the metrics endpoint.
    ("CONNECTOR_EXPOSE_METRICS", "true"),
    // The image's data directory, a volume below (used when CONNECTOR_SEND_TO_DIRECTORY=true).
    ("CONNECTOR_SEND_TO_DIRECTORY_PATH", "/data"),
];

/// `docker-compose.yml`: the service beside an OpenCTI platform, built from this clone, on
/// the platform's network, every setting listed (`ChangeMe-...` where the operator must
/// decide; optional ones commented out).
pub(crate) fn compose() -> String {
    let mut out = String::from(
        "# Generated by `arcsight-incidents metadata` from the settings table; do not edit.\n\
         # Every setting is listed: required ones say ChangeMe-<setting> (the connector refuses to\n\
         # start while one is left), optional ones without a default are commented out. See\n\
         # __metadata__/CONNECTOR_CONFIG_DOC.md for what each one does.\n\
         services:\n  connector-arcsight-incidents:\n\
         \x20   # Built from this directory on the first `docker compose up` and tagged as below.\n\
         \x20   build: .\n    image: ",
    );
    out.push_str(&format!(
        "{}:{}\n    environment:\n",
        manifest()["container_image"].as_str().unwrap_or_default(),
        manifest()["container_version"].as_str().unwrap_or_default()
    ));
    let mut section = "";
    for def in DEFS {
        let sec = def.yml.split_once('.').map_or("", |(s, _)| s);
        if sec != section {
            out.push_str(&format!("      # {sec}\n"));
            section = sec;
        }
        let value = COMPOSE_VALUES
            .iter()
            .find(|(name, _)| *name == def.env)
            .map(|(_, v)| *v)
            .or(def.default);
        match (value, def.required) {
            (Some(v), _) => out.push_str(&format!("      - {}={v}\n", def.env)),
            (None, true) => {
                out.push_str(&format!("      - {}={}\n", def.env, placeholder(def.env)))
            }
            (None, false) => out.push_str(&format!("      # - {}=\n", def.env)),
        }
    }
    out.push_str(
        "    volumes:\n\
         \x20     # Bundle files and the offline state (CONNECTOR_SEND_TO_DIRECTORY_PATH=/data):\n\
         \x20     # the image's /data belongs to the connector's user, uid 10001.\n\
         \x20     - arcsight-incidents-data:/data\n\
         \x20     # A config.yml instead of (or besides) the variables above, where the Python\n\
         \x20     # connector's image reads it:\n\
         \x20     # - ./config.yml:/opt/opencti-connector-arcsight-incidents/config.yml:ro\n\
         \x20   # Prometheus metrics, /healthz and /readyz (CONNECTOR_METRICS_PORT) are served inside\n\
         \x20   # the platform's network only; to scrape from the host, publish the port:\n\
         \x20   # ports:\n\
         \x20   #   - \"127.0.0.1:9095:9095\"\n\
         \x20   healthcheck:\n\
         \x20     test: [\"CMD\", \"arcsight-incidents\", \"healthcheck\"]\n\
         \x20     interval: 30s\n\
         \x20     timeout: 10s\n\
         \x20     retries: 3\n\
         \x20   networks:\n\
         \x20     - opencti\n\
         \x20   restart: always\n\
         \n\
         volumes:\n\
         \x20 arcsight-incidents-data:\n\
         \n\
         networks:\n\
         \x20 # The OpenCTI platform's network, where `opencti` (OPENCTI_URL) and `rabbitmq`\n\
         \x20 # resolve: `docker network ls` shows its name (<platform's project>_default).\n\
         \x20 opencti:\n\
         \x20   external: true\n\
         \x20   name: ${OPENCTI_NETWORK:-opencti_default}\n",
    );
    out
}

/// Every generated file, relative to the repository root.
pub fn files() -> Vec<(&'static str, String)> {
    let pretty = |v: Value| serde_json::to_string_pretty(&v).unwrap_or_default() + "\n";
    vec![
        ("__metadata__/connector_manifest.json", pretty(manifest())),
        (
            "__metadata__/connector_config_schema.json",
            pretty(config_schema()),
        ),
        ("__metadata__/CONNECTOR_CONFIG_DOC.md", config_doc()),
        ("config.yml.sample", config_sample()),
        ("docker-compose.yml", compose()),
    ]
}

/// Writes every generated file under `root`.
pub(crate) fn write_all(root: &Path) -> std::io::Result<()> {
    for (rel, text) in files() {
        let path = root.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, text)?;
    }
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
        let schema = config_schema();
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
        let sample = config_sample();
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
