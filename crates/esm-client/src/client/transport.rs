//! The transport: one ESM operation as a POST, its retries (backoff with jitter, `Retry-After`)
//! and the classification of the answer into JSON or a typed error.

use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::{Value, json};
use url::Url;

use super::EsmClient;
use crate::decode::{self, Service};
use crate::error::EsmError;
use crate::retry::parse_retry_after;
use peer_http::lock;

const CASE_SERVICE: &str = "/www/manager-service/rest/CaseService/";
const EVENTS_PATH: &str = "/www/manager-service/rest/SecurityEventService/getSecurityEvents";
const ACT_SERVICE: &str = "/www/manager-service/rest/ActiveListService/";

/// Where an operation of a service is posted.
fn service_path(service: Service, op: &str) -> String {
    match service {
        Service::Case => format!("{CASE_SERVICE}{op}"),
        // The one operation the connectors call on this service.
        Service::SecurityEvent => EVENTS_PATH.to_owned(),
        Service::ActiveList => format!("{ACT_SERVICE}{op}"),
    }
}

/// A request body: form (login, logout) or JSON (everything else).
pub(crate) enum Body {
    Form(Vec<(&'static str, String)>),
    Json(Value),
}

/// Turns a 2xx, non-HTML answer's text into what the caller wants (`op`, status, text). A plain
/// function, so each service decides how its answer is decoded: most into a `Value`, the
/// Active List's entries straight into typed rows (a whole list as a `Value` tree costs ~850 B
/// an entry).
pub(crate) type DecodeBody<T> = fn(&'static str, u16, &str) -> Result<T, EsmError>;

/// One failed attempt, with what the server said about when to come back.
struct Failure {
    error: EsmError,
    retry_after: Option<Duration>,
}

impl From<EsmError> for Failure {
    fn from(error: EsmError) -> Self {
        Failure {
            error,
            retry_after: None,
        }
    }
}

impl EsmClient {
    /// An authenticated operation and its unwrapped `return` value (`None`: ESM returned
    /// nothing).
    pub(crate) async fn call(
        &self,
        service: Service,
        op: &'static str,
        fields: Vec<(&'static str, Value)>,
    ) -> Result<Option<Value>, EsmError> {
        let (status, answer) = self.request(service, op, fields).await?;
        decode::unwrap_answer(op, answer).map_err(|message| EsmError::Decode {
            operation: op,
            status,
            message,
        })
    }

    /// The one authenticated path: posts `op` of `service` in the session's dialect, logging
    /// in if needed and once more if the token is refused. Returns the status and the decoded
    /// body (`Null` when empty), for the service to judge.
    pub(crate) async fn request(
        &self,
        service: Service,
        op: &'static str,
        fields: Vec<(&'static str, Value)>,
    ) -> Result<(u16, Value), EsmError> {
        self.request_with(service, op, fields, parse_body).await
    }

    /// [`EsmClient::request`], the answer's text decoded by `decode` rather than into a
    /// `Value`.
    pub(crate) async fn request_with<T>(
        &self,
        service: Service,
        op: &'static str,
        fields: Vec<(&'static str, Value)>,
        decode: DecodeBody<T>,
    ) -> Result<(u16, T), EsmError> {
        let url = self.url(&service_path(service, op));
        let mut session = self.session().await?;
        let mut relogged = false;
        loop {
            let token = session.token.expose_secret();
            let mut all = vec![("authToken", json!(token))];
            all.extend(fields.iter().cloned());
            let body = Body::Json(session.dialect.request(service, op, all));
            let secrets = [token, self.inner.cfg.password.expose_secret()];
            match self.send_with(op, &url, &body, &secrets, decode).await {
                Err(EsmError::Unauthorized { .. }) if !relogged => {
                    relogged = true;
                    session = self.relogin(session.generation).await?;
                }
                r => return r,
            }
        }
    }

    /// One request with retries on transient failures. Returns the status and the decoded
    /// JSON (`Null` for an empty body).
    pub(crate) async fn send(
        &self,
        op: &'static str,
        url: &Url,
        body: &Body,
        secrets: &[&str],
    ) -> Result<(u16, Value), EsmError> {
        self.send_with(op, url, body, secrets, parse_body).await
    }

    /// [`EsmClient::send`] with the answer's text decoded by `decode` (a failure to decode
    /// counts as the request's error, as an unparsable `Value` does).
    async fn send_with<T>(
        &self,
        op: &'static str,
        url: &Url,
        body: &Body,
        secrets: &[&str],
        decode: DecodeBody<T>,
    ) -> Result<(u16, T), EsmError> {
        let mut attempt = 1u32;
        loop {
            match self.attempt(op, url, body, secrets, decode).await {
                Ok(ok) => {
                    lock(&self.inner.stats).operations.entry(op).or_default().ok += 1;
                    return Ok(ok);
                }
                Err(f)
                    if f.error.is_transient() && self.inner.policy.allows_retry_after(attempt) =>
                {
                    let jitter = lock(&self.inner.jitter).next_unit();
                    let wait = self.inner.policy.delay(attempt, f.retry_after, jitter);
                    {
                        let mut stats = lock(&self.inner.stats);
                        stats.operations.entry(op).or_default().retried += 1;
                        stats.retry_wait += wait;
                    }
                    tracing::warn!(
                        operation = op,
                        attempt,
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        error = %f.error,
                        "ESM request failed; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(f) => {
                    lock(&self.inner.stats)
                        .operations
                        .entry(op)
                        .or_default()
                        .error += 1;
                    tracing::debug!(operation = op, attempt, error = %f.error, "ESM request failed");
                    return Err(f.error);
                }
            }
        }
    }

    async fn attempt<T>(
        &self,
        op: &'static str,
        url: &Url,
        body: &Body,
        secrets: &[&str],
        decode: DecodeBody<T>,
    ) -> Result<(u16, T), Failure> {
        tracing::trace!(operation = op, path = url.path(), "ESM request");
        let req = self
            .inner
            .http
            .post(url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        let req = match body {
            Body::Form(fields) => req.form(fields),
            Body::Json(v) => req.json(v),
        };
        let names = &self.inner.cfg.setting_names;
        let resp = req
            .send()
            .await
            .map_err(|e| EsmError::transport(op, e, names))?;
        let status = resp.status().as_u16();
        let header = |name: reqwest::header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header(reqwest::header::CONTENT_TYPE);
        let retry_after = header(reqwest::header::RETRY_AFTER)
            .and_then(|v| parse_retry_after(&v, chrono::Utc::now()));
        let text = crate::http::read_limited(resp, self.inner.cfg.max_response_bytes)
            .await
            .map_err(|e| match e {
                crate::http::BodyError::TooLarge => EsmError::TooLarge {
                    operation: op,
                    limit_mib: self.inner.cfg.max_response_bytes / crate::http::MIB,
                    setting: names.max_response_mb,
                },
                crate::http::BodyError::Transport(e) => EsmError::transport(op, e, names),
            })?;
        tracing::trace!(operation = op, status, bytes = text.len(), "ESM answer");
        check_answer(op, status, content_type.as_deref(), &text, secrets)
            .and_then(|()| decode(op, status, &text))
            .map(|v| (status, v))
            .map_err(|error| Failure { error, retry_after })
    }

    pub(crate) fn url(&self, path: &str) -> Url {
        let mut url = self.inner.cfg.base_url.clone();
        // Keep a reverse proxy's path prefix, if the base URL has one.
        let prefix = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{prefix}{path}"));
        url.set_query(Some("alt=json"));
        url.set_fragment(None);
        url
    }
}

/// Turns an HTTP answer into JSON or a typed error.
#[cfg(test)]
fn classify(
    op: &'static str,
    status: u16,
    content_type: Option<&str>,
    text: &str,
    secrets: &[&str],
) -> Result<(u16, Value), EsmError> {
    check_answer(op, status, content_type, text, secrets)?;
    parse_body(op, status, text).map(|v| (status, v))
}

/// `Ok` for a 2xx answer that is not an HTML page (its text is then the caller's to decode);
/// otherwise the typed error the status and the page say.
fn check_answer(
    op: &'static str,
    status: u16,
    content_type: Option<&str>,
    text: &str,
    secrets: &[&str],
) -> Result<(), EsmError> {
    let authenticated = op != "login";
    if (300..400).contains(&status) {
        return Err(EsmError::Redirect {
            operation: op,
            status,
        });
    }
    if decode::is_html(content_type, text) {
        let exception = decode::java_exception(text).map(|e| crate::redact::redact(&e, secrets));
        if authenticated
            && (status == 401 || decode::says_token_invalid(exception.as_deref().unwrap_or(text)))
        {
            return Err(EsmError::Unauthorized {
                operation: op,
                status,
            });
        }
        if status == 404 || status == 405 || decode::names_missing_operation(text) {
            return Err(EsmError::Unsupported {
                operation: op,
                status,
            });
        }
        return Err(EsmError::ErrorPage {
            operation: op,
            status,
            exception,
        });
    }
    if authenticated && status == 401 {
        return Err(EsmError::Unauthorized {
            operation: op,
            status,
        });
    }
    if status == 404 || status == 405 {
        return Err(EsmError::Unsupported {
            operation: op,
            status,
        });
    }
    if !(200..300).contains(&status) {
        if authenticated && decode::says_token_invalid(text) {
            return Err(EsmError::Unauthorized {
                operation: op,
                status,
            });
        }
        return Err(EsmError::Status {
            operation: op,
            status,
        });
    }
    Ok(())
}

/// The answer's text as JSON (`Null` for an empty body), repaired if need be.
fn parse_body(op: &'static str, status: u16, text: &str) -> Result<Value, EsmError> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    decode::parse_json(text).map_err(|e| EsmError::Decode {
        operation: op,
        status,
        // serde_json's message names a position, never the input.
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_an_error_whatever_the_status() {
        let page = "<!doctype html><html><body><p><b>Message</b> com.arcsight.x.InvalidResourceIDException: Invalid resource ID: [bogus] for Case</p></body></html>";
        let e = classify("getResourceById", 200, Some("text/html"), page, &[]).unwrap_err();
        assert!(
            matches!(e, EsmError::ErrorPage { status: 200, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("InvalidResourceIDException"), "{e}");
        assert!(!e.is_transient());
    }

    #[test]
    fn token_refusal_and_missing_operations_are_recognised() {
        let e = classify("findAllIds", 401, None, "", &[]).unwrap_err();
        assert!(matches!(e, EsmError::Unauthorized { .. }), "{e:?}");
        let page =
            "<html><body><p>java.lang.NoSuchMethodException: getResourcesByIds</p></body></html>";
        let e = classify("getResourcesByIds", 500, None, page, &[]).unwrap_err();
        assert!(matches!(e, EsmError::Unsupported { .. }), "{e:?}");
        // A failed login is not a refused token: logging in again would not help.
        let e = classify("login", 401, None, "", &[]).unwrap_err();
        assert!(matches!(e, EsmError::Status { status: 401, .. }), "{e:?}");
    }
}
