//! Helpers shared by the integration tests.

pub mod amqp;
pub mod amqp_proxy;
pub mod data;
pub mod env;
pub mod logs;
pub mod tls;
pub mod tls_proxy;
pub mod world;

/// The simulated platform, shared by both connectors' tests.
pub use platform_simulator as fake_platform;
