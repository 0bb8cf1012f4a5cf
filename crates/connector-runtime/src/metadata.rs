//! `__metadata__/`, the sample configuration, the compose service and the README tables,
//! generated from a connector's settings table and its [`Manifest`].
//!
//! The OpenCTI connector manager reads `connector_config_schema.json`; operators read
//! `CONNECTOR_CONFIG_DOC.md` and `config.yml.sample`. Generating them from the table the
//! settings are loaded by (and each connector testing that its committed files equal the
//! generated ones) means they can never drift from what the code actually reads.

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::settings::{Def, Kind};

/// What a connector is: its identity in the platform's catalogue (`connector_manifest.json`),
/// its command, where it looks for its config file, and its compose service. One constant per
/// connector; everything else is generated from its settings table.
#[derive(Debug, Clone, Copy)]
pub struct Manifest {
    /// The binary, as the generated files name it (`<binary> metadata`, `<binary> healthcheck`).
    pub binary: &'static str,
    pub title: &'static str,
    pub slug: &'static str,
    pub description: &'static str,
    pub short_description: &'static str,
    pub logo: &'static str,
    pub use_cases: &'static [&'static str],
    pub solution_categories: &'static [&'static str],
    pub license_type: &'static str,
    pub contact: Option<&'static str>,
    pub verified: bool,
    pub last_verified_date: Option<&'static str>,
    pub playbook_supported: bool,
    pub max_confidence_level: u32,
    pub support_version: &'static str,
    pub subscription_link: &'static str,
    pub source_code: &'static str,
    pub manager_supported: bool,
    pub container_version: &'static str,
    pub container_image: &'static str,
    /// `EXTERNAL_IMPORT`, `STREAM`, ...
    pub container_type: &'static str,
    /// Settings the platform's connector manager fills in itself: left out of the manifest
    /// schema, as the Python connectors' schemas do.
    pub managed: &'static [&'static str],
    /// Where config.yml is read from when `CONNECTOR_CONFIG_FILE` (or `--config`) does not
    /// say, in order.
    pub config_file_candidates: &'static [&'static str],
    /// The name in the probe file that checks a directory is writable.
    pub probe_name: &'static str,
    pub compose: Compose,
}

/// The connector's service in `docker-compose.yml`.
#[derive(Debug, Clone, Copy)]
pub struct Compose {
    /// The service's name.
    pub service: &'static str,
    /// Values the compose example sets differently from the defaults, to show a feature.
    pub values: &'static [(&'static str, &'static str)],
    /// The service's `volumes:` entries, as YAML lines (comments included), verbatim.
    pub volumes: &'static str,
    /// The named volumes those entries use, declared at the top level.
    pub named_volumes: &'static [&'static str],
    /// The metrics port the comment on publishing it shows (`CONNECTOR_METRICS_PORT`'s default).
    pub metrics_port: u16,
    /// The Dockerfile that builds the image, relative to the repository root; `None`: the
    /// root's `Dockerfile` (a plain `build: .`).
    pub dockerfile: Option<&'static str>,
    /// Compose profiles the service belongs to: one that is not started unless asked
    /// (`docker compose --profile <name> up`). Empty: always started.
    pub profiles: &'static [&'static str],
}

/// The placeholder of a setting the operator must fill in: distinct for each, so that an error
/// names the one left (and no two settings share a value a secret's redaction would hide).
pub fn placeholder(env: &str) -> String {
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
pub fn config_schema(manifest: &Manifest, defs: &[Def]) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for def in defs.iter().filter(|d| !manifest.managed.contains(&d.env)) {
        properties.insert(def.env.into(), schema_type(def));
        if def.required {
            required.push(Value::from(def.env));
        }
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("https://www.filigran.io/connectors/{}_config.schema.json", manifest.slug),
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": true,
    })
}

/// `__metadata__/connector_manifest.json`.
pub fn manifest_json(m: &Manifest) -> Value {
    json!({
        "title": m.title,
        "slug": m.slug,
        "description": m.description,
        "short_description": m.short_description,
        "logo": m.logo,
        "use_cases": m.use_cases,
        "solution_categories": m.solution_categories,
        "license_type": m.license_type,
        "contact": m.contact,
        "verified": m.verified,
        "last_verified_date": m.last_verified_date,
        "playbook_supported": m.playbook_supported,
        "max_confidence_level": m.max_confidence_level,
        "support_version": m.support_version,
        "subscription_link": m.subscription_link,
        "source_code": m.source_code,
        "manager_supported": m.manager_supported,
        "container_version": m.container_version,
        "container_image": m.container_image,
        "container_type": m.container_type,
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
pub fn config_doc(manifest: &Manifest, defs: &[Def]) -> String {
    let mut out = format!(
        "# Connector configuration\n\n\
         Generated by `{} metadata` from the settings table; do not edit.\n\
         Environment variables win over `config.yml` keys, key by key. An empty value counts as unset.\n\n\
         | Environment variable | config.yml key | Type | Required | Default | Description |\n\
         |---|---|---|---|---|---|\n",
        manifest.binary
    );
    for def in defs {
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
pub fn settings_table(manifest: &Manifest, defs: &[Def]) -> String {
    let doc = config_doc(manifest, defs);
    let start = doc.find("| Environment variable").unwrap_or(0);
    doc[start..].to_owned()
}

/// `readme` with the generated table `what` (`settings`, `differences`, ...) replaced by
/// `body`; `None` when its markers are missing. The markers are
/// `<!-- <what> table: generated by `<binary> metadata` -->` and `<!-- end of <what> table -->`.
pub fn readme_with_table(
    readme: &str,
    manifest: &Manifest,
    what: &str,
    body: &str,
) -> Option<String> {
    let begin = format!(
        "<!-- {what} table: generated by `{} metadata` -->\n",
        manifest.binary
    );
    let end = format!("<!-- end of {what} table -->");
    let start = readme.find(&begin)? + begin.len();
    let stop = start + readme[start..].find(&end)?;
    Some(format!("{}{}{}", &readme[..start], body, &readme[stop..]))
}

/// `config.yml.sample`: every setting, grouped by section, with comments.
pub fn config_sample(manifest: &Manifest, defs: &[Def]) -> String {
    let mut out = format!(
        "# {} configuration. Every key can also be set by its environment\n\
         # variable (shown in each comment), which wins over this file.\n",
        manifest.binary
    );
    let mut section = "";
    for def in defs {
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

/// `docker-compose.yml`: each connector's service beside an OpenCTI platform, built from this
/// clone, on the platform's network, every setting listed (`ChangeMe-...` where the operator
/// must decide; optional ones commented out).
pub fn compose(services: &[(&Manifest, &[Def])]) -> String {
    let binary = services.first().map_or("", |(m, _)| m.binary);
    let mut out = format!(
        "# Generated by `{binary} metadata` from the settings table; do not edit.\n\
         # Every setting is listed: required ones say ChangeMe-<setting> (the connector refuses to\n\
         # start while one is left), optional ones without a default are commented out. See\n\
         # __metadata__/CONNECTOR_CONFIG_DOC.md for what each one does.\n\
         services:\n",
    );
    for (manifest, defs) in services {
        out.push_str(&compose_service(manifest, defs));
    }
    out.push_str("\nvolumes:\n");
    for volume in services.iter().flat_map(|(m, _)| m.compose.named_volumes) {
        out.push_str(&format!("  {volume}:\n"));
    }
    out.push_str(
        "\n\
         networks:\n\
         \x20 # The OpenCTI platform's network, where `opencti` (OPENCTI_URL) and `rabbitmq`\n\
         \x20 # resolve: `docker network ls` shows its name (<platform's project>_default).\n\
         \x20 opencti:\n\
         \x20   external: true\n\
         \x20   name: ${OPENCTI_NETWORK:-opencti_default}\n",
    );
    out
}

/// One service of [`compose`].
fn compose_service(manifest: &Manifest, defs: &[Def]) -> String {
    let c = &manifest.compose;
    let build = match c.dockerfile {
        None => "    build: .\n".to_owned(),
        Some(file) => format!("    build:\n      context: .\n      dockerfile: {file}\n"),
    };
    let mut out = format!(
        "  {}:\n\
         \x20   # Built from this directory on the first `docker compose up` and tagged as below.\n\
         {build}    image: {}:{}\n",
        c.service, manifest.container_image, manifest.container_version
    );
    if !c.profiles.is_empty() {
        let quoted: Vec<String> = c.profiles.iter().map(|p| format!("\"{p}\"")).collect();
        out.push_str(&format!(
            "    # Not started by a plain `docker compose up`: add `--profile {}`.\n    profiles: [{}]\n",
            c.profiles[0],
            quoted.join(", ")
        ));
    }
    out.push_str("    environment:\n");
    let mut section = "";
    for def in defs {
        let sec = def.yml.split_once('.').map_or("", |(s, _)| s);
        if sec != section {
            out.push_str(&format!("      # {sec}\n"));
            section = sec;
        }
        let value = c
            .values
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
    out.push_str("    volumes:\n");
    out.push_str(c.volumes);
    out.push_str(&format!(
        "\x20   # Prometheus metrics, /healthz and /readyz (CONNECTOR_METRICS_PORT) are served inside\n\
         \x20   # the platform's network only; to scrape from the host, publish the port:\n\
         \x20   # ports:\n\
         \x20   #   - \"127.0.0.1:{port}:{port}\"\n\
         \x20   healthcheck:\n\
         \x20     test: [\"CMD\", \"{binary}\", \"healthcheck\"]\n\
         \x20     interval: 30s\n\
         \x20     timeout: 10s\n\
         \x20     retries: 3\n\
         \x20   networks:\n\
         \x20     - opencti\n\
         \x20   restart: always\n",
        port = c.metrics_port,
        binary = manifest.binary,
    ));
    out
}

/// The generated files of `__metadata__/` and `config.yml.sample`, relative to the
/// connector's root (the compose file, shared by the connectors of a repository, is
/// [`compose`]'s).
pub fn files(manifest: &Manifest, defs: &[Def]) -> Vec<(&'static str, String)> {
    let pretty = |v: Value| serde_json::to_string_pretty(&v).unwrap_or_default() + "\n";
    vec![
        (
            "__metadata__/connector_manifest.json",
            pretty(manifest_json(manifest)),
        ),
        (
            "__metadata__/connector_config_schema.json",
            pretty(config_schema(manifest, defs)),
        ),
        (
            "__metadata__/CONNECTOR_CONFIG_DOC.md",
            config_doc(manifest, defs),
        ),
        ("config.yml.sample", config_sample(manifest, defs)),
    ]
}

/// Writes `files` under `root`.
pub fn write_files(root: &Path, files: &[(&str, String)]) -> std::io::Result<()> {
    for (rel, text) in files {
        let path = root.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{int, key, kinds};

    const NAME: crate::settings::Key<kinds::Text> =
        key("X_NAME", "x.name", Some("x"), false, "A name.");
    const PASS: crate::settings::Key<kinds::Secret> =
        key("X_PASS", "x.pass", None, true, "A password.");
    const ID: crate::settings::Key<kinds::Text> = key("X_ID", "x.id", None, true, "An id.");
    const PORT: crate::settings::Key<kinds::Int> =
        int("Y_PORT", "y.port", (1, 9), Some("3"), false, "A port.");
    const DEFS: &[Def] = &[*NAME.def(), *PASS.def(), *ID.def(), *PORT.def()];

    const MANIFEST: Manifest = Manifest {
        binary: "x-connector",
        title: "X",
        slug: "x",
        description: "",
        short_description: "",
        logo: "",
        use_cases: &[],
        solution_categories: &[],
        license_type: "",
        contact: None,
        verified: false,
        last_verified_date: None,
        playbook_supported: false,
        max_confidence_level: 50,
        support_version: "",
        subscription_link: "",
        source_code: "",
        manager_supported: true,
        container_version: "rolling",
        container_image: "x/x",
        container_type: "STREAM",
        managed: &["X_ID"],
        config_file_candidates: &["config.yml"],
        probe_name: "x",
        compose: Compose {
            service: "connector-x",
            values: &[("X_NAME", "shown")],
            volumes: "      - x-data:/data\n",
            named_volumes: &["x-data"],
            metrics_port: 9095,
            dockerfile: None,
            profiles: &[],
        },
    };

    #[test]
    fn the_schema_hides_secrets_and_leaves_out_managed_settings() {
        let schema = config_schema(&MANIFEST, DEFS);
        assert_eq!(schema["properties"]["X_PASS"]["format"], "password");
        assert_eq!(schema["properties"]["X_PASS"]["writeOnly"], true);
        assert!(schema["properties"].get("X_ID").is_none());
        assert_eq!(schema["required"], json!(["X_PASS"]));
        assert_eq!(schema["properties"]["Y_PORT"]["default"], 3);
        assert_eq!(
            schema["$id"],
            "https://www.filigran.io/connectors/x_config.schema.json"
        );
    }

    #[test]
    fn the_sample_is_sectioned_yaml_with_placeholders_for_required_settings() {
        let sample = config_sample(&MANIFEST, DEFS);
        let cfg = config::Config::builder()
            .add_source(config::File::from_str(&sample, config::FileFormat::Yaml))
            .build()
            .unwrap();
        assert_eq!(cfg.get_string("x.name").unwrap(), "x");
        assert_eq!(cfg.get_string("x.pass").unwrap(), "ChangeMe-x-pass");
        assert_eq!(cfg.get_int("y.port").unwrap(), 3);
    }

    #[test]
    fn compose_lists_every_setting_with_the_manifest_values() {
        let compose = compose(&[(&MANIFEST, DEFS)]);
        assert!(compose.contains("  connector-x:\n"));
        assert!(compose.contains("    image: x/x:rolling\n"));
        assert!(compose.contains("      - X_NAME=shown\n"));
        assert!(compose.contains("      - X_ID=ChangeMe-x-id\n"));
        assert!(compose.contains("[\"CMD\", \"x-connector\", \"healthcheck\"]"));
        assert!(compose.contains("\nvolumes:\n  x-data:\n"));
        assert!(compose.contains("    build: .\n    image: x/x:rolling\n    environment:\n"));
        assert!(!compose.contains("profiles:"));
    }

    #[test]
    fn a_service_of_another_dockerfile_and_a_profile_says_both() {
        const OTHER: Manifest = Manifest {
            compose: Compose {
                service: "connector-y",
                dockerfile: Some("y/Dockerfile"),
                profiles: &["y"],
                volumes: "      - y-data:/data\n",
                named_volumes: &["y-data"],
                ..MANIFEST.compose
            },
            ..MANIFEST
        };
        let compose = compose(&[(&MANIFEST, DEFS), (&OTHER, DEFS)]);
        let y = &compose[compose
            .find("  connector-y:\n")
            .expect("the second service")..];
        assert!(
            y.contains("    build:\n      context: .\n      dockerfile: y/Dockerfile\n    image: x/x:rolling\n"),
            "{y}"
        );
        assert!(
            y.contains("    profiles: [\"y\"]\n    environment:\n"),
            "{y}"
        );
        let cfg = config::Config::builder()
            .add_source(config::File::from_str(&compose, config::FileFormat::Yaml))
            .build()
            .expect("valid YAML");
        assert_eq!(
            cfg.get_string("services.connector-y.build.dockerfile")
                .unwrap(),
            "y/Dockerfile"
        );
    }

    #[test]
    fn readme_tables_are_replaced_between_their_markers() {
        let readme = "a\n<!-- settings table: generated by `x-connector metadata` -->\nold\n<!-- end of settings table -->\nb";
        assert_eq!(
            readme_with_table(readme, &MANIFEST, "settings", "new\n").as_deref(),
            Some(
                "a\n<!-- settings table: generated by `x-connector metadata` -->\nnew\n<!-- end of settings table -->\nb"
            )
        );
        assert_eq!(
            readme_with_table(readme, &MANIFEST, "differences", ""),
            None
        );
    }
}
