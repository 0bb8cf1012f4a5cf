//! Queue protocol `api`: the whole bundle in one `stixBundlePush` (OpenCTI >= 6.3).

use super::{DeliveryError, DeliveryReport, Sink};
use crate::opencti::OpenCtiClient;
use crate::stix::Bundle;

#[derive(Debug, Clone)]
pub(crate) struct ApiDelivery {
    client: OpenCtiClient,
    connector_id: String,
}

impl ApiDelivery {
    pub(crate) fn new(client: OpenCtiClient, connector_id: impl Into<String>) -> Self {
        ApiDelivery {
            client,
            connector_id: connector_id.into(),
        }
    }
}

impl Sink for ApiDelivery {
    /// The platform counts no expectations for a pushed bundle.
    fn expectations(&self, _bundle: &Bundle) -> u64 {
        0
    }

    async fn deliver(
        &mut self,
        bundle: &Bundle,
        work_id: Option<&str>,
    ) -> Result<DeliveryReport, DeliveryError> {
        // The STIX model only holds strings: serialising it has no failure path.
        let json = serde_json::to_string(bundle).expect("bundles always serialise");
        self.client
            .stix_bundle_push(&self.connector_id, &json, work_id)
            .await?;
        Ok(DeliveryReport {
            messages: 1,
            bytes: json.len() as u64,
            path: None,
        })
    }
}
