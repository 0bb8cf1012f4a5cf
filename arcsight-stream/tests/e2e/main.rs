//! Connector-level black-box tests (issue 21, "Tests"): the real `arcsight-stream` binary run
//! as a child process, configured by environment variables only, against the simulated
//! platform (GraphQL + live stream) and the ESM simulator's Active List. Each test asserts at a
//! quiet moment that the list is exact (the platform's indicators' values, plus the foreign
//! entries an administrator put there), with bounded waits, never sleeps.
//!
//! What the engine-level tests (`tests/engine*.rs`) cover on a model of the stream is covered
//! here for what only the process shows: signals, restarts, the real live stream client and
//! its reconnections, the real ESM session, `/healthz`, the logs.

mod esm;
mod kill;
mod lifecycle;
mod stream;
mod world;
