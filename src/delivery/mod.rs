//! How a bundle reaches the platform: one [`Sink`] trait, three implementations chosen by
//! the settings (`amqp`, the default; `api`; `directory`), and `AnySink` to hold any of
//! them, so one run can feed the queue and a directory at once.
//!
//! The run loop calls [`Sink::open`] before its first page, then per page:
//! [`Sink::expectations`] -> `work_add_expectations` -> [`Sink::deliver`], and [`Sink::close`]
//! at the end of every run, failed or not.
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

pub use amqp::{AmqpDelivery, AmqpOptions, MqTls, message_body};
pub(crate) use api::ApiDelivery;
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

/// Where bundles go: one way of sending them, with what a run needs to hold open.
///
/// Named for what the run sees (a destination with a lifecycle), not for the act of sending:
/// [`DeliveryReport`] and [`DeliveryError`] name that.
pub trait Sink: Send {
    /// Takes what a run needs (the AMQP sink connects); called once, before the first page.
    /// Nothing by default.
    fn open(&mut self) -> impl Future<Output = Result<(), DeliveryError>> + Send {
        async { Ok(()) }
    }

    /// How many messages the platform should expect for `bundle` (`addExpectations`);
    /// 0 when nothing goes through the queue.
    fn expectations(&self, bundle: &Bundle) -> u64;

    /// Sends `bundle`; `Ok` only when all of it was accepted.
    fn deliver(
        &mut self,
        bundle: &Bundle,
        work_id: Option<&str>,
    ) -> impl Future<Output = Result<DeliveryReport, DeliveryError>> + Send;

    /// Releases what `open` took; called at the end of every run, failed or not. The run's
    /// outcome does not depend on it (every page was confirmed, or the run already failed).
    /// Nothing by default.
    fn close(&mut self) -> impl Future<Output = Result<(), DeliveryError>> + Send {
        async { Ok(()) }
    }
}

/// Any of the connector's sinks: what the daemon holds, one per configured destination.
/// An enum rather than `dyn Sink`: three known kinds, no boxed futures.
// At most two live in a process, for its whole life: their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum AnySink {
    Amqp(AmqpDelivery),
    Api(ApiDelivery),
    Directory(DirectoryDelivery),
}

impl Sink for AnySink {
    async fn open(&mut self) -> Result<(), DeliveryError> {
        match self {
            AnySink::Amqp(s) => s.open().await,
            AnySink::Api(s) => s.open().await,
            AnySink::Directory(s) => s.open().await,
        }
    }

    fn expectations(&self, bundle: &Bundle) -> u64 {
        match self {
            AnySink::Amqp(s) => s.expectations(bundle),
            AnySink::Api(s) => s.expectations(bundle),
            AnySink::Directory(s) => s.expectations(bundle),
        }
    }

    async fn deliver(
        &mut self,
        bundle: &Bundle,
        work_id: Option<&str>,
    ) -> Result<DeliveryReport, DeliveryError> {
        match self {
            AnySink::Amqp(s) => s.deliver(bundle, work_id).await,
            AnySink::Api(s) => s.deliver(bundle, work_id).await,
            AnySink::Directory(s) => s.deliver(bundle, work_id).await,
        }
    }

    async fn close(&mut self) -> Result<(), DeliveryError> {
        match self {
            AnySink::Amqp(s) => s.close().await,
            AnySink::Api(s) => s.close().await,
            AnySink::Directory(s) => s.close().await,
        }
    }
}
