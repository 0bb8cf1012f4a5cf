//! What this connector is, for the generated metadata and the settings' file lookups: the
//! Python `stream/arcsight` connector's identity where it describes the same connector (slug,
//! title, type, use cases, categories, platform versions), ours where it describes this build
//! (image, description, source).

use connector_runtime::metadata::{Compose, Manifest};

pub const MANIFEST: Manifest = Manifest {
    binary: "arcsight-stream",
    title: "ArcSight",
    // The Python connector's slug: the platform's catalogue knows the connector by it.
    slug: "arcsight",
    description: "Keeps an ArcSight ESM Active List exactly in sync with the indicators of an OpenCTI live stream: IPv4/IPv6 addresses, domain names, URLs and file hashes are added when an indicator is created or comes back, and removed when no live indicator carries them any more (deleted, revoked, detection off, expired at valid_until, or its pattern changed). Writes are batched, nothing is lost when ESM or the platform fail, and a periodic reconciliation repairs the list without touching entries the connector does not manage. A drop-in replacement for the Python ArcSight stream connector (same settings, same state).",
    short_description: "Sync IOCs from OpenCTI to an ArcSight ESM Active List in real time, exactly.",
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
    source_code: "https://github.com/arcsight-incidents/arcsight-incidents/tree/main/arcsight-stream",
    manager_supported: true,
    container_version: "rolling",
    container_image: "arcsight-incidents/connector-arcsight-stream",
    container_type: "STREAM",
    // As the Python connector's schema, which leaves CONNECTOR_ID to the manager.
    managed: &["CONNECTOR_ID"],
    // The working directory, then where the Python connector's image reads it.
    config_file_candidates: &["config.yml", "/opt/opencti-connector-arcsight/config.yml"],
    probe_name: "arcsight-stream",
    compose: Compose {
        service: "connector-arcsight-stream",
        values: &[
            ("OPENCTI_URL", "http://opencti:8080"),
            // The healthcheck asks the metrics endpoint.
            ("CONNECTOR_EXPOSE_METRICS", "true"),
            // The image's data directory, a volume: a restart resumes from the saved position.
            ("ARCSIGHT_LEDGER_PATH", "/data/ledger.bin"),
        ],
        volumes: "      # The ledger (ARCSIGHT_LEDGER_PATH=/data/ledger.bin): the image's /data belongs to\n\
                  \x20     # the connector's user, uid 10001.\n\
                  \x20     - arcsight-stream-data:/data\n\
                  \x20     # A config.yml instead of (or besides) the variables above, where the Python\n\
                  \x20     # connector's image reads it:\n\
                  \x20     # - ./config.yml:/opt/opencti-connector-arcsight/config.yml:ro\n",
        named_volumes: &["arcsight-stream-data"],
        metrics_port: 9096,
        dockerfile: Some("arcsight-stream/Dockerfile"),
        profiles: &["stream"],
    },
};
