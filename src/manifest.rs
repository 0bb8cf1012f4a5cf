//! What this connector is, for the generated metadata and the settings' file lookups: the
//! Python connector's identity where it describes the same connector (title, logo, use cases,
//! categories, platform versions), ours where it describes this build (image, description,
//! source).

use connector_runtime::metadata::{Compose, Manifest};

pub(crate) const MANIFEST: Manifest = Manifest {
    binary: "arcsight-incidents",
    title: "ArcSight Incidents",
    slug: "arcsight-incidents",
    description: "Imports ArcSight ESM cases as OpenCTI Case-Incidents and their security events as Incidents, with the events' addresses, host names and user names as observables. Incremental: only new or modified cases are sent. A drop-in replacement for the Python ArcSight Incidents connector (same settings, same object ids).",
    short_description: "Import ArcSight ESM cases (Case-Incidents) and their events (Incidents) into OpenCTI.",
    logo: "__metadata__/logo.png",
    use_cases: &["Detection & Response Enablement"],
    solution_categories: &["SIEM & Security Analytics"],
    license_type: "Commercial",
    contact: None,
    verified: false,
    last_verified_date: None,
    playbook_supported: false,
    max_confidence_level: 50,
    support_version: ">=7.260701.0",
    subscription_link: "https://www.opentext.com/products/arcsight-enterprise-security-manager",
    source_code: "https://github.com/arcsight-incidents/arcsight-incidents",
    manager_supported: true,
    container_version: "rolling",
    container_image: "arcsight-incidents/connector-arcsight-incidents",
    container_type: "EXTERNAL_IMPORT",
    // As the Python connector's schema (it lists OPENCTI_URL and OPENCTI_TOKEN).
    managed: &["CONNECTOR_ID"],
    // The working directory, then where the Python connector's image has operators mount it.
    config_file_candidates: &[
        "config.yml",
        "/opt/opencti-connector-arcsight-incidents/config.yml",
    ],
    probe_name: "arcsight-incidents",
    compose: Compose {
        service: "connector-arcsight-incidents",
        values: &[
            ("OPENCTI_URL", "http://opencti:8080"),
            // The healthcheck asks the metrics endpoint.
            ("CONNECTOR_EXPOSE_METRICS", "true"),
            // The image's data directory, a volume (used when CONNECTOR_SEND_TO_DIRECTORY=true).
            ("CONNECTOR_SEND_TO_DIRECTORY_PATH", "/data"),
        ],
        volumes: "      # Bundle files and the offline state (CONNECTOR_SEND_TO_DIRECTORY_PATH=/data):\n\
                  \x20     # the image's /data belongs to the connector's user, uid 10001.\n\
                  \x20     - arcsight-incidents-data:/data\n\
                  \x20     # A config.yml instead of (or besides) the variables above, where the Python\n\
                  \x20     # connector's image reads it:\n\
                  \x20     # - ./config.yml:/opt/opencti-connector-arcsight-incidents/config.yml:ro\n",
        named_volumes: &["arcsight-incidents-data"],
        metrics_port: 9095,
        dockerfile: None,
        profiles: &[],
    },
};
