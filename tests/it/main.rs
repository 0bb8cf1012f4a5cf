//! The connector's black-box tests, in one binary so that CI links the crate once, not once
//! per file. Each module is one area; `common` holds the shared helpers (the simulated platform,
//! a deployment "world", RabbitMQ topology, log capture) and `data` the test data's paths.

mod broker_faults;
mod cli;
mod common;
mod daemon;
mod delivery_amqp;
mod delivery_directory;
mod dropin;
mod entrypoint;
mod esm_client;
mod faults;
mod fuzz_decode;
mod golden;
mod metadata;
mod opencti;
mod properties;
mod security;
mod settings;
mod simulator_repair;
mod sync;
mod tls_trust;
mod verify;
