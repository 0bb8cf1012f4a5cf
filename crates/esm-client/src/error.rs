//! Errors of the ESM client.
//!
//! Every variant names the ESM operation (`login`, `findAllIds`, ...) so an operator can tell
//! which call failed. None of them ever holds a password, a token, or a URL: transport errors are
//! stripped of their URL (reqwest's `without_url`) before their text is kept, and text lifted
//! from an error page is redacted of the session's secrets first.

use crate::setting_names::SettingNames;

/// What went wrong below HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// No connection (refused, DNS, TLS handshake).
    Connect,
    /// The request timeout elapsed.
    Timeout,
    /// The connection broke while sending or receiving.
    Other,
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportKind::Connect => "connection failed",
            TransportKind::Timeout => "timed out",
            TransportKind::Other => "transport error",
        })
    }
}

/// An ESM client error. Cheap to clone, so one failed batch can be reported for every id in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EsmError {
    /// The client could not be built (bad CA file, TLS setup).
    #[error("ESM client configuration: {message}")]
    Config { message: String },

    /// The request never got an HTTP answer.
    #[error("ESM {operation}: {kind}: {message}")]
    Transport {
        operation: &'static str,
        kind: TransportKind,
        /// The error chain, URL stripped.
        message: String,
    },

    /// A non-2xx answer that is not an HTML error page.
    #[error("ESM {operation}: HTTP {status}")]
    Status {
        operation: &'static str,
        status: u16,
    },

    /// An HTML (Tomcat) error page, whatever the status: ESM sometimes sends one with HTTP 200.
    #[error("ESM {operation}: HTTP {status} with an error page{}", exception_suffix(.exception))]
    ErrorPage {
        operation: &'static str,
        status: u16,
        /// The Java exception the page names (class and message, secrets redacted), if any.
        exception: Option<String>,
    },

    /// The session token was refused (HTTP 401 or a body saying so), also after logging in again.
    #[error("ESM {operation}: HTTP {status}: the session token was refused")]
    Unauthorized {
        operation: &'static str,
        status: u16,
    },

    /// The body is neither JSON (even after repair) nor the expected shape.
    #[error("ESM {operation}: HTTP {status}: undecodable answer: {message}")]
    Decode {
        operation: &'static str,
        status: u16,
        message: String,
    },

    /// A batch answer did not contain a requested resource.
    #[error("ESM {operation}: the answer does not contain the requested resource")]
    NotReturned { operation: &'static str },

    /// The task fetching this resource ended abnormally (a bug, never an ESM answer).
    #[error("ESM {operation}: the request task was aborted")]
    Aborted { operation: &'static str },

    /// A 3xx answer: following it would replay the credentials to another address.
    #[error("ESM {operation}: HTTP {status}: redirects are not followed")]
    Redirect {
        operation: &'static str,
        status: u16,
    },

    /// The answer was larger than the limit (`setting`, `..._MAX_RESPONSE_MB`); reading
    /// stopped at the limit.
    #[error(
        "ESM {operation}: the answer exceeds {limit_mib} MiB ({setting}); it was not read further"
    )]
    TooLarge {
        operation: &'static str,
        limit_mib: u64,
        /// The setting that raises the limit, as the connector names it.
        setting: &'static str,
    },

    /// A resource holds a value beyond a sane size (a string of megabytes, an id of kilobytes):
    /// that resource alone is refused.
    #[error("ESM {operation}: {what} is {size} bytes long, more than the {limit} accepted")]
    Oversized {
        operation: &'static str,
        what: &'static str,
        size: usize,
        limit: usize,
    },

    /// The ESM does not implement this operation (404/405 or a "no such operation" page).
    #[error("ESM {operation}: operation not supported by this ESM (HTTP {status})")]
    Unsupported {
        operation: &'static str,
        status: u16,
    },
}

fn exception_suffix(e: &Option<String>) -> String {
    match e {
        Some(x) => format!(": {x}"),
        None => String::new(),
    }
}

impl EsmError {
    /// Worth retrying later with the same input: connection failures, timeouts, 429 and 5xx.
    /// An error page whose exception says the request itself is wrong (bad id, bad login,
    /// missing method) is not: repeating it only burns ESM sessions or locks accounts.
    pub fn is_transient(&self) -> bool {
        match self {
            EsmError::Transport { .. } => true,
            EsmError::Status { status, .. } => *status == 429 || (500..=599).contains(status),
            EsmError::ErrorPage {
                status, exception, ..
            } => {
                let permanent = exception
                    .as_deref()
                    .is_some_and(crate::decode::is_permanent_exception);
                (*status == 429 || (500..=599).contains(status)) && !permanent
            }
            EsmError::Config { .. }
            | EsmError::Unauthorized { .. }
            | EsmError::Decode { .. }
            | EsmError::NotReturned { .. }
            | EsmError::Aborted { .. }
            | EsmError::TooLarge { .. }
            | EsmError::Oversized { .. }
            | EsmError::Redirect { .. }
            | EsmError::Unsupported { .. } => false,
        }
    }

    /// The ESM operation that failed (`"config"` for configuration errors).
    pub fn operation(&self) -> &'static str {
        match self {
            EsmError::Config { .. } => "config",
            EsmError::Transport { operation, .. }
            | EsmError::Status { operation, .. }
            | EsmError::ErrorPage { operation, .. }
            | EsmError::Unauthorized { operation, .. }
            | EsmError::Decode { operation, .. }
            | EsmError::NotReturned { operation }
            | EsmError::Aborted { operation }
            | EsmError::TooLarge { operation, .. }
            | EsmError::Redirect { operation, .. }
            | EsmError::Oversized { operation, .. }
            | EsmError::Unsupported { operation, .. } => operation,
        }
    }

    /// The HTTP status, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            EsmError::Status { status, .. }
            | EsmError::ErrorPage { status, .. }
            | EsmError::Unauthorized { status, .. }
            | EsmError::Decode { status, .. }
            | EsmError::Redirect { status, .. }
            | EsmError::Unsupported { status, .. } => Some(*status),
            EsmError::Config { .. }
            | EsmError::Transport { .. }
            | EsmError::NotReturned { .. }
            | EsmError::TooLarge { .. }
            | EsmError::Oversized { .. }
            | EsmError::Aborted { .. } => None,
        }
    }

    /// A transport error, its text without the URL (which may carry a query string); a TLS
    /// failure's hint names the connector's settings.
    pub(crate) fn transport(
        operation: &'static str,
        e: reqwest::Error,
        names: &SettingNames,
    ) -> EsmError {
        let kind = if e.is_timeout() {
            TransportKind::Timeout
        } else if e.is_connect() {
            TransportKind::Connect
        } else {
            TransportKind::Other
        };
        let mut message = crate::http::reqwest_error_text(e);
        message.push_str(&crate::http::tls_hint(
            &message,
            names.ca_file,
            names.ssl_verify,
        ));
        EsmError::Transport {
            operation,
            kind,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_follows_the_retry_rules() {
        let status = |s| EsmError::Status {
            operation: "findAllIds",
            status: s,
        };
        assert!(status(429).is_transient());
        assert!(status(500).is_transient());
        assert!(status(503).is_transient());
        assert!(!status(400).is_transient());
        assert!(!status(403).is_transient());
        let page = |s, e: Option<&str>| EsmError::ErrorPage {
            operation: "getResourceById",
            status: s,
            exception: e.map(str::to_owned),
        };
        assert!(page(500, None).is_transient());
        assert!(page(502, Some("java.lang.OutOfMemoryError: heap")).is_transient());
        assert!(
            !page(
                500,
                Some("com.arcsight.product.manager.resource.service.v1.axis2.jaxws.InvalidResourceIDException: x")
            )
            .is_transient()
        );
        assert!(!page(200, None).is_transient());
        let t = EsmError::Transport {
            operation: "login",
            kind: TransportKind::Timeout,
            message: "operation timed out".into(),
        };
        assert!(t.is_transient());
    }

    #[test]
    fn display_names_operation_and_status() {
        let e = EsmError::ErrorPage {
            operation: "getResourceById",
            status: 500,
            exception: Some("InvalidResourceIDException: Invalid resource ID".into()),
        };
        let s = e.to_string();
        assert!(s.contains("getResourceById") && s.contains("500"), "{s}");
        assert!(s.contains("InvalidResourceIDException"), "{s}");
        assert_eq!(e.operation(), "getResourceById");
        assert_eq!(e.status(), Some(500));
    }
}
