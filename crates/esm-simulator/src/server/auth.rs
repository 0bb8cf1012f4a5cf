//! Login, logout and the token check every authenticated call goes through.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::Value;

use super::pages::{bad_token_page, html, json_ok, page, short_page, xml_answer};
use super::params::Params;
use super::{AUTH_EXCEPTION, Endpoint, Faults, MAX_ISSUED_KEPT, Shared, lock, wrap};

impl Shared {
    fn new_token(&self) -> String {
        let mut rng = lock(&self.token_rng);
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_be_bytes());
        }
        // Same look as ESM's tokens: 43 base64url characters and a trailing dot.
        format!(
            "{}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        )
    }

    pub(super) fn login(&self, p: &Params, json: bool) -> Response {
        let ok = p.first("login") == Some(self.username.as_str())
            && p.first("password") == Some(self.password.as_str());
        if !ok {
            tracing::debug!("simulator: login refused");
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                short_page(&format!("{AUTH_EXCEPTION}: Login failed")),
            );
        }
        let token = self.new_token();
        lock(&self.sessions).insert(token.clone(), 0);
        {
            let mut issued = lock(&self.issued);
            if issued.len() >= MAX_ISSUED_KEPT {
                issued.pop_front();
            }
            issued.push_back(token.clone());
        }
        if !json {
            return xml_answer(
                Endpoint::Login,
                &format!("<ns3:return>{token}</ns3:return>"),
            );
        }
        json_ok(
            wrap(self.dialect, Endpoint::Login, Some(Value::String(token)))
                .to_string()
                .into_bytes(),
        )
    }

    pub(super) fn logout(&self, p: &Params) -> Response {
        let Some(token) = p.first("authToken").filter(|t| !t.is_empty()) else {
            return page(StatusCode::UNAUTHORIZED, "Missing authentication token");
        };
        if lock(&self.sessions).remove(token).is_none() {
            return bad_token_page();
        }
        StatusCode::NO_CONTENT.into_response()
    }

    /// Counts one use of the token and refuses unknown, expired or missing ones.
    pub(super) fn authenticate(&self, p: &Params, f: &Faults) -> Result<(), Response> {
        let Some(token) = p.first("authToken").filter(|t| !t.is_empty()) else {
            return Err(page(
                StatusCode::UNAUTHORIZED,
                "Missing authentication token",
            ));
        };
        let mut sessions = lock(&self.sessions);
        let Some(uses) = sessions.get_mut(token) else {
            return Err(bad_token_page());
        };
        *uses += 1;
        if f.token_max_uses.is_some_and(|max| *uses > max) {
            sessions.remove(token);
            drop(sessions);
            self.bump("fault.token_expired");
            return Err(bad_token_page());
        }
        Ok(())
    }
}
