//! The one error type of the delivery boundary.

use std::path::PathBuf;
use std::time::Duration;

use crate::opencti::OpenCtiError;

/// Why a bundle was not (entirely) delivered. A failed delivery must not advance the
/// connector's state: some messages may have reached the broker, none is known to be missing
/// only when the delivery succeeded.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The broker could not be reached or refused the connection (credentials, vhost).
    #[error("cannot connect to RabbitMQ at {host}:{port}: {reason}")]
    Connect {
        host: String,
        port: u16,
        reason: String,
    },
    /// An AMQP operation other than a publish failed (channel open, confirm.select, close).
    #[error("RabbitMQ {operation} failed: {reason}")]
    Channel {
        operation: &'static str,
        reason: String,
    },
    /// A publish failed or its confirmation was lost: the channel or connection closed
    /// (e.g. the exchange does not exist), after `confirmed` of `total` messages were acked.
    #[error(
        "RabbitMQ publish of message {action_sequence} failed ({confirmed}/{total} confirmed): {reason}"
    )]
    Publish {
        action_sequence: u64,
        confirmed: u64,
        total: u64,
        reason: String,
    },
    /// The broker refused a message (basic.nack).
    #[error("RabbitMQ refused message {action_sequence} (nack)")]
    Nack { action_sequence: u64 },
    /// The broker returned a message it could not route (mandatory publish).
    #[error(
        "RabbitMQ could not route message {action_sequence} to exchange {exchange:?} with routing key {routing_key:?}: {reply_code} {reply_text}"
    )]
    Unroutable {
        action_sequence: u64,
        exchange: String,
        routing_key: String,
        reply_code: u16,
        reply_text: String,
    },
    /// No confirmation within the publish timeout.
    #[error("RabbitMQ did not confirm message {action_sequence} within {after:?}")]
    Timeout {
        action_sequence: u64,
        after: Duration,
    },
    /// The broker blocked the connection (`connection.blocked`: a memory or disk alarm) and
    /// did not unblock it within `after`; it names its reason.
    #[error("RabbitMQ blocked the connection ({reason}) and did not unblock it within {after:?}")]
    Blocked { reason: String, after: Duration },
    /// The `api` protocol: the platform refused or did not answer.
    #[error(transparent)]
    Platform(#[from] OpenCtiError),
    /// The `directory` protocol: a file operation failed.
    #[error("{operation} {}: {source}", path.display())]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl DeliveryError {
    /// Is a later retry of the whole delivery likely to succeed?
    pub fn is_transient(&self) -> bool {
        match self {
            DeliveryError::Connect { .. }
            | DeliveryError::Channel { .. }
            | DeliveryError::Publish { .. }
            | DeliveryError::Nack { .. }
            | DeliveryError::Timeout { .. }
            | DeliveryError::Blocked { .. } => true,
            // A routing problem is a configuration problem: retrying sends into the same void.
            DeliveryError::Unroutable { .. } => false,
            DeliveryError::Platform(e) => e.is_transient(),
            DeliveryError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
            ),
        }
    }

    /// Does the answer name the content sent, so that splitting the bundle can find the case
    /// no sink takes? Only an answer about what was sent does: a broker nack, a payload the
    /// platform finds too large (413) or a GraphQL error about the bundle, a directory that
    /// refuses that file. A timeout, a closed or blocked connection, a refused connection or
    /// a platform transport error are failures of the sink: bisecting them would only repeat
    /// the failure 2n-1 times (a page of 100 cases, 199 deliveries of 30 s each).
    pub fn blames_content(&self) -> bool {
        match self {
            DeliveryError::Nack { .. } => true,
            DeliveryError::Connect { .. }
            | DeliveryError::Channel { .. }
            | DeliveryError::Publish { .. }
            | DeliveryError::Unroutable { .. }
            | DeliveryError::Timeout { .. }
            | DeliveryError::Blocked { .. } => false,
            DeliveryError::Platform(e) => match e {
                OpenCtiError::Status { status, .. } => *status == 413,
                // An answer about the bundle, unless it only says the platform is busy or
                // the token is refused.
                OpenCtiError::GraphQl { .. } => !e.is_transient() && !e.is_auth(),
                OpenCtiError::Config { .. }
                | OpenCtiError::Transport { .. }
                | OpenCtiError::TooLarge { .. }
                | OpenCtiError::Decode { .. } => false,
            },
            // A full disk or a missing directory refuses every file alike.
            DeliveryError::Io { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::StorageFull
                    | std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::TimedOut
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opencti::{GraphQlError, TransportKind};

    #[test]
    fn only_answers_about_the_content_blame_it() {
        let timeout = DeliveryError::Timeout {
            action_sequence: 1,
            after: Duration::from_secs(30),
        };
        assert!(!timeout.blames_content());
        let closed = DeliveryError::Publish {
            action_sequence: 2,
            confirmed: 1,
            total: 3,
            reason: "connection closed".into(),
        };
        assert!(!closed.blames_content());
        let transport = DeliveryError::Platform(OpenCtiError::Transport {
            operation: "stixBundlePush",
            kind: TransportKind::Timeout,
            reason: "timed out".into(),
        });
        assert!(!transport.blames_content());
        assert!(DeliveryError::Nack { action_sequence: 1 }.blames_content());
        let too_large = DeliveryError::Platform(OpenCtiError::Status {
            operation: "stixBundlePush",
            status: 413,
            excerpt: String::new(),
        });
        assert!(too_large.blames_content());
        let bad_bundle = DeliveryError::Platform(OpenCtiError::GraphQl {
            operation: "stixBundlePush",
            errors: vec![GraphQlError {
                message: "invalid bundle".into(),
                code: Some("VALIDATION_ERROR".into()),
            }],
        });
        assert!(bad_bundle.blames_content());
    }
}
