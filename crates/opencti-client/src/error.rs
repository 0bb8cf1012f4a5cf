//! The one error type of the platform boundary.

use std::fmt;

/// What went wrong talking to the OpenCTI platform.
///
/// No variant carries the token, the request URL (it may hold credentials) or the request
/// body: only the operation name, the status and what the platform said.
#[derive(Debug, thiserror::Error)]
pub enum OpenCtiError {
    /// The client could not be built (an invalid custom header, a TLS setup failure).
    #[error("cannot build the OpenCTI client: {reason}")]
    Config { reason: String },
    /// The request did not get an HTTP answer (connect, TLS, timeout, body read).
    #[error("OpenCTI {operation}: {kind} error: {reason}")]
    Transport {
        operation: &'static str,
        kind: TransportKind,
        reason: String,
    },
    /// An HTTP answer other than 200.
    #[error("OpenCTI {operation}: HTTP {status}{}", status_detail(*.status, .excerpt))]
    Status {
        operation: &'static str,
        status: u16,
        /// What the platform said, never its body verbatim: the code and message of a GraphQL
        /// error in the body (secrets redacted, shortened), else empty.
        excerpt: String,
    },
    /// The answer was larger than `OPENCTI_MAX_RESPONSE_MB`; reading stopped at the limit.
    #[error(
        "OpenCTI {operation}: the answer exceeds {limit_mib} MiB (OPENCTI_MAX_RESPONSE_MB); it was not read further"
    )]
    TooLarge {
        operation: &'static str,
        limit_mib: u64,
    },
    /// A 200 answer with a top-level `errors` array.
    #[error("OpenCTI {operation}: GraphQL error(s): {}", DisplayErrors(.errors))]
    GraphQl {
        operation: &'static str,
        errors: Vec<GraphQlError>,
    },
    /// A 200 answer that does not have the shape the schema promises.
    #[error("OpenCTI {operation}: unexpected answer: {reason}")]
    Decode {
        operation: &'static str,
        reason: String,
    },
}

fn status_detail(status: u16, excerpt: &str) -> String {
    let mut out = String::new();
    if (300..400).contains(&status) {
        out.push_str(": redirects are not followed");
    }
    if !excerpt.is_empty() {
        out.push_str(": ");
        out.push_str(excerpt);
    }
    out
}

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Connect,
    Timeout,
    Body,
    Other,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Connect => "connection",
            TransportKind::Timeout => "timeout",
            TransportKind::Body => "body",
            TransportKind::Other => "request",
        })
    }
}

/// One entry of a GraphQL `errors` array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphQlError {
    pub message: String,
    /// `extensions.code` (OpenCTI also puts it in `name`), e.g. `AUTH_REQUIRED`.
    pub code: Option<String>,
}

struct DisplayErrors<'a>(&'a [GraphQlError]);

impl fmt::Display for DisplayErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            match &e.code {
                Some(code) => write!(f, "[{code}] {}", e.message)?,
                None => f.write_str(&e.message)?,
            }
        }
        Ok(())
    }
}

/// GraphQL error codes that describe a passing condition on the platform side (lock
/// contention, a busy engine) rather than a wrong request or missing rights.
const TRANSIENT_CODES: &[&str] = &[
    "LOCK_ERROR",
    "DATABASE_ERROR",
    "ENGINE_ERROR",
    "TIMEOUT_ERROR",
    "UNSUPPORTED_ERROR_TEMPORARY",
];

/// GraphQL error codes of a refused token or missing rights (OpenCTI's and Apollo's).
const AUTH_CODES: &[&str] = &[
    "AUTH_REQUIRED",
    "AUTH_FAILURE",
    "FORBIDDEN_ACCESS",
    "FORBIDDEN",
    "UNAUTHENTICATED",
];

impl OpenCtiError {
    /// Is a later retry of the same call likely to succeed?
    pub fn is_transient(&self) -> bool {
        match self {
            OpenCtiError::Config { .. }
            | OpenCtiError::Decode { .. }
            | OpenCtiError::TooLarge { .. } => false,
            OpenCtiError::Transport { .. } => true,
            OpenCtiError::Status { status, .. } => {
                *status == 408 || *status == 429 || (500..600).contains(status)
            }
            OpenCtiError::GraphQl { errors, .. } => {
                !errors.is_empty()
                    && errors.iter().all(|e| {
                        e.code
                            .as_deref()
                            .is_some_and(|c| TRANSIENT_CODES.contains(&c))
                    })
            }
        }
    }

    /// Did the platform refuse the token or the connector user's rights? Retrying cannot help:
    /// an operator has to fix the token.
    pub fn is_auth(&self) -> bool {
        match self {
            OpenCtiError::Status { status, .. } => *status == 401 || *status == 403,
            OpenCtiError::GraphQl { errors, .. } => errors.iter().any(|e| {
                e.code
                    .as_deref()
                    .is_some_and(|c| AUTH_CODES.iter().any(|a| c.eq_ignore_ascii_case(a)))
            }),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transience_follows_status_and_codes() {
        let status = |s| OpenCtiError::Status {
            operation: "x",
            status: s,
            excerpt: String::new(),
        };
        assert!(status(503).is_transient());
        assert!(status(429).is_transient());
        assert!(!status(401).is_transient());
        assert!(!status(400).is_transient());
        let gql = |code: Option<&str>| OpenCtiError::GraphQl {
            operation: "x",
            errors: vec![GraphQlError {
                message: "m".into(),
                code: code.map(str::to_owned),
            }],
        };
        assert!(gql(Some("LOCK_ERROR")).is_transient());
        assert!(!gql(Some("AUTH_REQUIRED")).is_transient());
        assert!(!gql(None).is_transient());
        assert_eq!(
            gql(Some("AUTH_REQUIRED")).to_string(),
            "OpenCTI x: GraphQL error(s): [AUTH_REQUIRED] m"
        );
    }
}
