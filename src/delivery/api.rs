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
    /// None from the connector: for a pushed bundle the platform's worker, not the platform's
    /// API, adds the expectations, when it takes the bundle off the push queue and splits it
    /// (`addExpectations(n)` for its n split messages, each reported when imported). An
    /// expectation of ours for the bundle itself would never be reported (the worker reports
    /// the split messages, not the bundle it split), and the work would never complete.
    ///
    /// What this means for the work (the run's sentinel is its only expectation of ours): the
    /// work cannot complete during the run, since the sentinel is reported only at its end;
    /// but once it is, `processed >= expected` may already hold for bundles the worker has not
    /// split yet, so the platform writes the work `complete` while those are still queued.
    /// Their split then adds to the counts without reopening the work. The counts end right;
    /// the status can say `complete` before the last bundle of the run is ingested.
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
