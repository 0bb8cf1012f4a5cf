//! Helpers shared by the integration tests.

pub mod amqp;
pub mod amqp_proxy;
pub mod data;
pub mod env;
pub mod fake_platform;
pub mod logs;
pub mod tls;
pub mod tls_proxy;
pub mod world;
