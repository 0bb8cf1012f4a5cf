//! What every client of an untrusted peer (ESM, the platform, the broker) shares, whichever
//! connector it serves:
//! - [`http`]: a body read bounded in size, JSON bodies, TLS failures explained in terms of
//!   the settings that fix them, and reqwest errors as secret-free text;
//! - [`tls`]: trust (public roots, the OS store, CA files) and client identities;
//! - [`redact`]: secrets removed from a peer's text in every encoding they may be echoed in;
//! - [`lock`]: a mutex lock that survives a panicked holder.

pub mod http;
mod lock;
pub mod redact;
pub mod tls;

pub use lock::lock;
