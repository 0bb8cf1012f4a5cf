//! How a bundle reaches the platform: one [`Delivery`] trait, three implementations chosen
//! by the settings (`amqp`, the default; `api`; `directory`). The run reaches them through
//! `sync::adapters`, which also opens and closes the AMQP connection of each run.
//!
//! The run loop calls, per page: [`Delivery::expectations`] -> `work_add_expectations` ->
//! [`Delivery::deliver`].
//!
//! TLS needs no set-up call: the lock file compiles rustls with ring only, lapin's
//! connector installs ring as the process default on first use if nothing else did, and
//! reqwest falls back to ring explicitly; no path panics for lack of a provider.

mod amqp;
mod api;
mod directory;
mod error;
pub mod split;

use std::future::Future;
use std::path::PathBuf;

pub use amqp::{AmqpDelivery, AmqpOptions, message_body};
pub use api::ApiDelivery;
pub use directory::{DirectoryDelivery, DirectoryIdentity, file_prefix};
pub use error::DeliveryError;
pub use split::{SplitBundle, split_bundle, split_count};

use crate::stix::Bundle;

/// What one delivery did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeliveryReport {
    /// AMQP messages confirmed, or 1 for a pushed bundle or a written file.
    pub messages: u64,
    /// Bytes sent (message bodies) or written.
    pub bytes: u64,
    /// The file written, for `directory`.
    pub path: Option<PathBuf>,
}

/// One way of sending bundles.
pub trait Delivery {
    /// How many messages the platform should expect for `bundle` (`addExpectations`);
    /// 0 when nothing goes through the queue.
    fn expectations(&self, bundle: &Bundle) -> u64;

    /// Sends `bundle`; `Ok` only when all of it was accepted.
    fn deliver(
        &self,
        bundle: &Bundle,
        work_id: Option<&str>,
    ) -> impl Future<Output = Result<DeliveryReport, DeliveryError>> + Send;
}
