//! The HTTP side: one `POST {url}/graphql` per call, answers checked for `errors`.

use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::debug;

use super::documents as doc;
use super::{
    ConnectorInfo, ConnectorRegistration, GraphQlError, MqConnection, OpenCtiConfig, OpenCtiError,
    PingAnswer, QueueDetails, Registration, TransportKind, WorkFate,
};

/// A cheap-to-clone platform client (the `reqwest::Client` inside is shared).
#[derive(Clone)]
pub struct OpenCtiClient {
    http: reqwest::Client,
    endpoint: url::Url,
    /// Only to scrub an answer that would echo it; the header itself is marked sensitive.
    token: secrecy::SecretString,
    /// Custom header values: as secret as the token.
    header_values: Vec<String>,
    max_response_bytes: u64,
}

impl std::fmt::Debug for OpenCtiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The endpoint may carry credentials in its userinfo: show only scheme, host and port.
        f.debug_struct("OpenCtiClient")
            .field("host", &self.endpoint.host_str())
            .field("port", &self.endpoint.port_or_known_default())
            .finish_non_exhaustive()
    }
}

impl OpenCtiClient {
    pub fn new(cfg: OpenCtiConfig) -> Result<Self, OpenCtiError> {
        let config_err = |reason: String| OpenCtiError::Config { reason };
        let mut headers = HeaderMap::new();
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", cfg.token.expose_secret()))
            .map_err(|_| config_err("the token is not a valid header value".into()))?;
        auth.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, auth);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in &cfg.custom_headers {
            let n = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| config_err(format!("custom header name {name:?} is invalid")))?;
            // Values are not echoed: a custom header often carries a secret of its own.
            let mut v = HeaderValue::from_str(value.trim()).map_err(|_| {
                config_err(format!("the value of custom header {name:?} is invalid"))
            })?;
            v.set_sensitive(true);
            headers.insert(n, v);
        }
        // Trust as operators of the Python connector expect: the OS store (and SSL_CERT_FILE),
        // the CA files of the settings, the public roots; or nothing when verification is off.
        let extra = crate::tls::certificates_of_files(&cfg.ca_files).map_err(config_err)?;
        let mut tls =
            crate::tls::client_config(&extra, cfg.ssl_verify, None).map_err(config_err)?;
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .user_agent(concat!("arcsight-incidents/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .timeout(cfg.timeout)
            // A redirect would re-send the token and the custom headers elsewhere, maybe in
            // clear text: the platform never redirects its API.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| config_err(e.without_url().to_string()))?;
        Ok(OpenCtiClient {
            http,
            endpoint: graphql_endpoint(&cfg.url),
            header_values: cfg
                .custom_headers
                .iter()
                .map(|(_, v)| v.trim().to_owned())
                // A short value ("1", "yes") is no secret, and hiding it would mangle messages.
                .filter(|v| v.len() >= 8)
                .collect(),
            token: cfg.token,
            max_response_bytes: cfg.max_response_bytes,
        })
    }

    /// The platform version (`about.version`).
    pub async fn health(&self) -> Result<String, OpenCtiError> {
        #[derive(Deserialize)]
        struct Data {
            about: Option<About>,
        }
        #[derive(Deserialize)]
        struct About {
            version: String,
        }
        let op = "healthCheck";
        let data: Data = self.call(op, doc::HEALTH_CHECK, json!({})).await?;
        data.about
            .map(|a| a.version)
            .ok_or_else(|| decode(op, "about is null"))
    }

    pub async fn register(&self, c: &ConnectorRegistration) -> Result<Registration, OpenCtiError> {
        #[derive(Deserialize)]
        struct Data {
            #[serde(rename = "registerConnector")]
            register: Option<Registered>,
        }
        #[derive(Deserialize)]
        struct Registered {
            connector_state: Option<String>,
            connector_state_timestamp: Option<String>,
            config: Config,
            connector_user_id: Option<String>,
        }
        #[derive(Deserialize)]
        struct Config {
            connection: Connection,
            push_routing: String,
            push_exchange: String,
        }
        #[derive(Deserialize)]
        struct Connection {
            host: String,
            vhost: String,
            use_ssl: bool,
            port: i64,
            user: String,
            pass: String,
        }
        let op = "registerConnector";
        let vars = json!({"input": {
            "id": c.id,
            "name": c.name,
            "type": c.connector_type.as_str(),
            "scope": c.scope,
            "auto": false,
            "only_contextual": false,
            "playbook_compatible": false,
        }});
        // The answer carries the state, which may be far beyond the answer limit of every
        // other call (16 MB at 1,000,000 cases): it gets the state's allowance on top.
        let limit = self
            .max_response_bytes
            .saturating_add(super::STATE_ANSWER_ALLOWANCE);
        let data: Data = self
            .call_limited(op, doc::REGISTER_CONNECTOR, vars, limit)
            .await?;
        let r = data
            .register
            .ok_or_else(|| decode(op, "registerConnector is null"))?;
        let user_id = r
            .connector_user_id
            .filter(|s| !s.is_empty())
            .ok_or_else(|| decode(op, "connector_user_id is missing"))?;
        let port = u16::try_from(r.config.connection.port)
            .map_err(|_| decode(op, "config.connection.port is not a TCP port"))?;
        let conn = r.config.connection;
        Ok(Registration {
            connector_user_id: user_id,
            connector_state: r.connector_state.filter(|s| !s.is_empty()),
            state_timestamp: r.connector_state_timestamp,
            mq: MqConnection {
                host: conn.host,
                port,
                vhost: conn.vhost,
                use_ssl: conn.use_ssl,
                user: conn.user,
                pass: conn.pass.into(),
                push_exchange: r.config.push_exchange,
                push_routing: r.config.push_routing,
            },
        })
    }

    /// `state` is the connector's whole state as JSON text. The platform stores what a ping
    /// carries (`None` too, which erases the state) unless a reset is pending, so every ping
    /// carries the whole state. The answer does not echo it: see [`PingAnswer`].
    pub async fn ping(
        &self,
        connector_id: &str,
        state: Option<String>,
        info: &ConnectorInfo,
    ) -> Result<PingAnswer, OpenCtiError> {
        #[derive(Deserialize)]
        struct Data {
            #[serde(rename = "pingConnector")]
            ping: Option<Pinged>,
        }
        #[derive(Deserialize)]
        struct Pinged {
            connector_state_timestamp: Option<String>,
        }
        let op = "pingConnector";
        // Not copied into a `Value`, and owned: the state is megabytes at 100,000 cases, and
        // it is freed as soon as the request body is written, before the answer is read.
        #[derive(Serialize)]
        struct Vars<'a> {
            #[serde(rename = "connectorInfo")]
            connector_info: &'a ConnectorInfo,
            id: &'a str,
            state: Option<String>,
        }
        let vars = Vars {
            id: connector_id,
            state,
            connector_info: info,
        };
        let data: Data = self.call(op, doc::PING_CONNECTOR, vars).await?;
        let p = data
            .ping
            .ok_or_else(|| decode(op, "pingConnector is null (unknown connector?)"))?;
        Ok(PingAnswer {
            state_timestamp: p.connector_state_timestamp,
        })
    }

    /// Creates a work (a run shown in the UI) and returns its id.
    pub async fn work_add(
        &self,
        connector_id: &str,
        friendly_name: &str,
    ) -> Result<String, OpenCtiError> {
        #[derive(Deserialize)]
        struct Data {
            #[serde(rename = "workAdd")]
            work: Option<Work>,
        }
        #[derive(Deserialize)]
        struct Work {
            id: String,
        }
        let op = "workAdd";
        let vars = json!({"connectorId": connector_id, "friendlyName": friendly_name});
        let data: Data = self.call(op, doc::WORK_ADD, vars).await?;
        data.work
            .map(|w| w.id)
            .ok_or_else(|| decode(op, "workAdd is null"))
    }

    /// Adds `n` expectations to a work; a negative `n` gives expectations back (the platform
    /// adds it to the work's expected count).
    pub async fn work_add_expectations(&self, work_id: &str, n: i64) -> Result<(), OpenCtiError> {
        let op = "addExpectations";
        // The schema's Int is 32-bit: a bigger page would be refused by the platform anyway.
        let n = i32::try_from(n).map_err(|_| decode(op, "expectations exceed a GraphQL Int"))?;
        let vars = json!({"id": work_id, "expectations": n});
        self.call_work_edit(op, doc::ADD_EXPECTATIONS, vars).await
    }

    /// Reports one expectation of a work processed, in error when `error` is set.
    pub async fn work_report_expectation(
        &self,
        work_id: &str,
        error: Option<&str>,
    ) -> Result<(), OpenCtiError> {
        let error = error.map(|e| json!({"error": e, "source": "connector"}));
        let vars = json!({"id": work_id, "error": error});
        self.call_work_edit("reportExpectation", doc::REPORT_EXPECTATION, vars)
            .await
    }

    pub async fn work_to_processed(
        &self,
        work_id: &str,
        message: &str,
        in_error: bool,
    ) -> Result<(), OpenCtiError> {
        let vars = json!({"id": work_id, "message": message, "inError": in_error});
        self.call_work_edit("workToProcessed", doc::WORK_TO_PROCESSED, vars)
            .await
    }

    /// The whole bundle, unsplit (queue protocol `api`).
    pub async fn stix_bundle_push(
        &self,
        connector_id: &str,
        bundle_json: &str,
        work_id: Option<&str>,
    ) -> Result<(), OpenCtiError> {
        #[derive(Deserialize)]
        struct Data {
            #[serde(rename = "stixBundlePush")]
            pushed: Option<bool>,
        }
        let op = "stixBundlePush";
        let vars = json!({"connectorId": connector_id, "bundle": bundle_json, "work_id": work_id});
        let data: Data = self.call(op, doc::STIX_BUNDLE_PUSH, vars).await?;
        match data.pushed {
            Some(true) => Ok(()),
            _ => Err(decode(op, "the platform did not accept the bundle")),
        }
    }

    /// What became of a work: deleted (`null`), still pending, or settled with the errors
    /// its workers reported.
    pub async fn work_fate(&self, work_id: &str) -> Result<WorkFate, OpenCtiError> {
        #[derive(Deserialize)]
        struct Data {
            work: Option<Work>,
        }
        #[derive(Deserialize)]
        struct Work {
            status: Option<String>,
            #[serde(default)]
            errors: Option<Vec<Option<Message>>>,
        }
        #[derive(Deserialize)]
        struct Message {
            source: Option<String>,
            message: Option<String>,
        }
        let data: Data = self
            .call("work", doc::WORK_FATE, json!({"id": work_id}))
            .await?;
        let Some(work) = data.work else {
            return Ok(WorkFate::Deleted);
        };
        if !matches!(work.status.as_deref(), Some("complete" | "timeout")) {
            return Ok(WorkFate::Pending);
        }
        let errors = work
            .errors
            .unwrap_or_default()
            .into_iter()
            .flatten()
            // The run's own reports (a failed run's summary) are not import errors.
            .filter(|m| m.source.as_deref() != Some("connector"))
            .map(|m| m.message.unwrap_or_default())
            .collect();
        Ok(WorkFate::Settled { errors })
    }

    /// Which of `standard_ids` (case-incident ids) the platform holds: one call, asking for
    /// at most as many as it is given.
    pub async fn existing_case_incidents(
        &self,
        standard_ids: &[String],
    ) -> Result<std::collections::HashSet<String>, OpenCtiError> {
        #[derive(Deserialize)]
        struct Data {
            #[serde(rename = "caseIncidents")]
            found: Option<Connection>,
        }
        #[derive(Deserialize)]
        struct Connection {
            #[serde(default)]
            edges: Option<Vec<Option<Edge>>>,
        }
        #[derive(Deserialize)]
        struct Edge {
            node: Node,
        }
        #[derive(Deserialize)]
        struct Node {
            standard_id: String,
        }
        let op = "caseIncidents";
        let vars = json!({"ids": standard_ids, "first": standard_ids.len()});
        let data: Data = self
            .call(op, doc::CASE_INCIDENTS_BY_STANDARD_ID, vars)
            .await?;
        let found = data
            .found
            .ok_or_else(|| decode(op, "caseIncidents is null"))?;
        Ok(found
            .edges
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .map(|e| e.node.standard_id)
            .collect())
    }

    pub async fn queue_details(&self, connector_id: &str) -> Result<QueueDetails, OpenCtiError> {
        #[derive(Deserialize)]
        struct Data {
            connector: Option<Connector>,
        }
        #[derive(Deserialize)]
        struct Connector {
            connector_queue_details: Details,
        }
        #[derive(Deserialize)]
        struct Details {
            messages_number: f64,
            messages_size: f64,
        }
        let op = "GetConnector";
        let data: Data = self
            .call(op, doc::GET_CONNECTOR_QUEUE, json!({"id": connector_id}))
            .await?;
        let d = data
            .connector
            .ok_or_else(|| decode(op, "connector is null (unknown connector?)"))?
            .connector_queue_details;
        // The schema types both as Float; a negative or NaN count means "nothing queued".
        let count = |x: f64| {
            if x.is_finite() && x > 0.0 {
                x as u64
            } else {
                0
            }
        };
        Ok(QueueDetails {
            messages_number: count(d.messages_number),
            messages_size: count(d.messages_size),
        })
    }

    async fn call_work_edit(
        &self,
        op: &'static str,
        query: &str,
        vars: Value,
    ) -> Result<(), OpenCtiError> {
        #[derive(Deserialize)]
        struct Data {
            #[serde(rename = "workEdit")]
            edit: Option<Value>,
        }
        let data: Data = self.call(op, query, vars).await?;
        data.edit
            .map(|_| ())
            .ok_or_else(|| decode(op, "workEdit is null (unknown work?)"))
    }

    /// One GraphQL round trip; `T` is the shape of `data`. The answer is read up to
    /// `OPENCTI_MAX_RESPONSE_MB`.
    async fn call<T: DeserializeOwned, V: Serialize>(
        &self,
        op: &'static str,
        query: &str,
        variables: V,
    ) -> Result<T, OpenCtiError> {
        self.call_limited(op, query, variables, self.max_response_bytes)
            .await
    }

    /// [`Self::call`], the answer read up to `limit` bytes.
    async fn call_limited<T: DeserializeOwned, V: Serialize>(
        &self,
        op: &'static str,
        query: &str,
        variables: V,
        limit: u64,
    ) -> Result<T, OpenCtiError> {
        debug!(operation = op, "OpenCTI call");
        #[derive(Serialize)]
        struct Body<'a, V> {
            query: &'a str,
            variables: V,
        }
        let body = crate::http::json_body(&Body { query, variables })
            .map_err(|e| decode(op, &format!("cannot encode the request: {e}")))?;
        let resp = self
            .http
            .post(self.endpoint.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| transport(op, e))?;
        let status = resp.status();
        let text = crate::http::read_limited(resp, limit)
            .await
            .map_err(|e| match e {
                crate::http::BodyError::TooLarge => OpenCtiError::TooLarge {
                    operation: op,
                    limit_mib: limit / crate::http::MIB,
                },
                crate::http::BodyError::Transport(e) => transport(op, e),
            })?;
        if status != reqwest::StatusCode::OK {
            return Err(OpenCtiError::Status {
                operation: op,
                status: status.as_u16(),
                excerpt: self.excerpt(&text),
            });
        }
        #[derive(Deserialize)]
        struct Answer<T> {
            data: Option<T>,
        }
        #[derive(Deserialize)]
        struct RawError {
            #[serde(default)]
            message: String,
            #[serde(default)]
            name: Option<String>,
            #[serde(default)]
            extensions: Option<Extensions>,
        }
        #[derive(Deserialize)]
        struct Extensions {
            code: Option<String>,
        }
        // Errors first, from a loose parse: an error answer's `data` may be null or partial.
        let raw: Value =
            serde_json::from_str(&text).map_err(|e| decode(op, &format!("not JSON ({e})")))?;
        // The text is megabytes when it carries a large state: freed before `raw` is taken
        // apart.
        drop(text);
        if let Some(errs) = raw.get("errors").filter(|e| !e.is_null()) {
            let errs: Vec<RawError> = serde_json::from_value(errs.clone())
                .map_err(|e| decode(op, &format!("malformed errors array ({e})")))?;
            if !errs.is_empty() {
                let errors = errs
                    .into_iter()
                    .map(|e| GraphQlError {
                        message: self.scrub(&e.message),
                        code: e
                            .extensions
                            .and_then(|x| x.code)
                            .or(e.name)
                            .map(|c| self.scrub(&c)),
                    })
                    .collect();
                return Err(OpenCtiError::GraphQl {
                    operation: op,
                    errors,
                });
            }
        }
        let answer: Answer<T> =
            serde_json::from_value(raw).map_err(|e| decode(op, &e.to_string()))?;
        answer.data.ok_or_else(|| decode(op, "data is null"))
    }

    /// A message the platform wrote, fit for a log line: short, no control characters, and
    /// withheld whole if it echoes the token or a custom header in any form.
    fn scrub(&self, text: &str) -> String {
        let mut secrets = vec![self.token.expose_secret()];
        secrets.extend(self.header_values.iter().map(String::as_str));
        crate::redact::peer_message(text, &secrets)
    }

    /// What is kept of a non-200 body: never the body itself (a proxy page may echo the
    /// request), only the code and message of the GraphQL errors it holds, if any.
    fn excerpt(&self, body: &str) -> String {
        let Ok(v) = serde_json::from_str::<Value>(body) else {
            return String::new();
        };
        let Some(errors) = v.get("errors").and_then(Value::as_array) else {
            return String::new();
        };
        errors
            .iter()
            .take(3)
            .map(|e| {
                let message = self.scrub(e.get("message").and_then(Value::as_str).unwrap_or(""));
                let code = e
                    .pointer("/extensions/code")
                    .or_else(|| e.get("name"))
                    .and_then(Value::as_str)
                    .map(|c| self.scrub(c));
                match code {
                    Some(c) => format!("[{c}] {message}"),
                    None => message,
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// `{url}/graphql`, without the `//` pycti produces from a trailing slash, and without any
/// query or fragment the operator may have pasted.
fn graphql_endpoint(base: &url::Url) -> url::Url {
    let mut u = base.clone();
    u.set_query(None);
    u.set_fragment(None);
    let path = format!("{}/graphql", u.path().trim_end_matches('/'));
    u.set_path(&path);
    u
}

fn decode(op: &'static str, reason: &str) -> OpenCtiError {
    OpenCtiError::Decode {
        operation: op,
        reason: reason.to_owned(),
    }
}

fn transport(op: &'static str, e: reqwest::Error) -> OpenCtiError {
    let kind = if e.is_timeout() {
        TransportKind::Timeout
    } else if e.is_connect() {
        TransportKind::Connect
    } else if e.is_body() || e.is_decode() {
        TransportKind::Body
    } else {
        TransportKind::Other
    };
    let mut reason = crate::http::reqwest_error_text(e);
    // No setting adds a CA for the platform: the built-in roots are what it is checked against.
    reason.push_str(&crate::http::tls_hint(&reason, None, "OPENCTI_SSL_VERIFY"));
    OpenCtiError::Transport {
        operation: op,
        kind,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_is_joined_without_double_slash_or_query() {
        let cases = [
            ("http://octi:8080", "http://octi:8080/graphql"),
            ("http://octi:8080/", "http://octi:8080/graphql"),
            ("https://h/opencti/", "https://h/opencti/graphql"),
            ("https://h/opencti?x=1#f", "https://h/opencti/graphql"),
        ];
        for (base, want) in cases {
            let got = graphql_endpoint(&url::Url::parse(base).unwrap());
            assert_eq!(got.as_str(), want, "{base}");
        }
    }
}
