//! The smallest environment that makes valid settings, for the tests that load settings
//! in-process.

use std::collections::HashMap;

/// Every required setting, with the given platform token and ESM password (each test picks its
/// own, so that a leak names the test).
pub fn required(token: &str, esm_password: &str) -> HashMap<String, String> {
    [
        ("OPENCTI_URL", "http://opencti:8080"),
        ("OPENCTI_TOKEN", token),
        ("CONNECTOR_ID", "2b7a3b4e-8f47-4d34-9a2e-1c7b3c2f1a10"),
        (
            "ARCSIGHT_INCIDENTS_API_BASE_URL",
            "https://esm.example.com:8443",
        ),
        ("ARCSIGHT_INCIDENTS_USERNAME", "connector"),
        ("ARCSIGHT_INCIDENTS_PASSWORD", esm_password),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}
