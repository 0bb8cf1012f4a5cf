//! The connector's names of the settings the client's messages mention (its own module: the
//! client and the errors both need it, and neither owns the other).

/// The settings an ESM error or warning tells the operator to change, as the connector names
/// them: each connector has its own prefix (the import's `ARCSIGHT_INCIDENTS_*`, the stream
/// connector's `ARCSIGHT_*`), and a message naming a setting that does not exist misleads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingNames {
    /// TLS verification of ESM (`..._SSL_VERIFY`).
    pub ssl_verify: &'static str,
    /// Extra CA certificates for ESM, when the connector has such a setting.
    pub ca_file: Option<&'static str>,
    /// The largest answer read (`..._MAX_RESPONSE_MB`).
    pub max_response_mb: &'static str,
}

impl SettingNames {
    /// The import connector's (`ARCSIGHT_INCIDENTS_*`).
    pub const ARCSIGHT_INCIDENTS: SettingNames = SettingNames {
        ssl_verify: "ARCSIGHT_INCIDENTS_SSL_VERIFY",
        ca_file: Some("ARCSIGHT_INCIDENTS_CA_FILE"),
        max_response_mb: "ARCSIGHT_INCIDENTS_MAX_RESPONSE_MB",
    };
}
