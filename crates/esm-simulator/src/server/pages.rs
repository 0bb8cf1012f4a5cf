//! Answer bodies: JSON and XML answers, Tomcat's error pages and the pages built from them.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{AUTH_EXCEPTION, Endpoint, INVALID_RESOURCE};

/// The page ESM sends when a resource breaks its serializer: HTTP 500, a Java exception.
pub(super) fn poison_page() -> Response {
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        tomcat_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "java.lang.NullPointerException: cannot serialize resource",
        ),
    )
}

pub(super) fn json_ok(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub(super) fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html;charset=utf-8")],
        body,
    )
        .into_response()
}

pub(super) fn xml_answer(ep: Endpoint, inner: &str) -> Response {
    let name = ep.name();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?><ns3:{name}Response xmlns:ns3=\"http://ws.v1.service.resource.manager.product.arcsight.com/\">{inner}</ns3:{name}Response>"
    );
    ([(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

pub(super) fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Tomcat's error report page (the shape of error-invalid-resource.html).
pub(super) fn tomcat_page(status: StatusCode, message: &str) -> String {
    let code = status.as_u16();
    let reason = status.canonical_reason().unwrap_or("Error");
    let (kind, description) = match code {
        500 => (
            "Exception Report",
            "The server encountered an unexpected condition that prevented it from fulfilling the request.",
        ),
        401 => (
            "Status Report",
            "The request has not been applied because it lacks valid authentication credentials for the target resource.",
        ),
        404 => (
            "Status Report",
            "The origin server did not find a current representation for the target resource or is not willing to disclose that one exists.",
        ),
        405 => (
            "Status Report",
            "The method received in the request-line is known by the origin server but not supported by the target resource.",
        ),
        503 => (
            "Status Report",
            "The server is currently unable to handle the request due to a temporary overload or scheduled maintenance, which will likely be alleviated after some delay.",
        ),
        _ => ("Status Report", "The request could not be served."),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><title>HTTP Status {code} – {reason}</title></head><body><h1>HTTP Status {code} – {reason}</h1><hr class=\"line\" /><p><b>Type</b> {kind}</p><p><b>Message</b> {message}</p><p><b>Description</b> {description}</p><hr class=\"line\" /><h3>Apache Tomcat</h3></body></html>"
    )
}

/// The shorter page ESM sends for authentication failures (the shape of error-login.html).
pub(super) fn short_page(message: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><title>HTTP Status 500 – Internal Server Error</title></head><body><h1>HTTP Status 500 – Internal Server Error</h1><p><b>Message</b> {message}</p><h3>Apache Tomcat</h3></body></html>"
    )
}

pub(super) fn page(status: StatusCode, message: &str) -> Response {
    html(status, tomcat_page(status, &escape_html(message)))
}

pub(super) fn server_error(message: &str) -> Response {
    page(StatusCode::INTERNAL_SERVER_ERROR, message)
}

pub(super) fn invalid_resource(id: &str) -> Response {
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        tomcat_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!(
                "{INVALID_RESOURCE}: Invalid resource ID: [{}] for Case",
                escape_html(id)
            ),
        ),
    )
}

pub(super) fn bad_token_page() -> Response {
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        short_page(&format!(
            "{AUTH_EXCEPTION}: Invalid or expired authentication token"
        )),
    )
}
