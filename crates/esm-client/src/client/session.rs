//! The session: login (the credentials in the POST body), one re-login when ESM refuses the
//! token, logout, and the dialect detected from the login answer.

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::EsmClient;
use super::transport::Body;
use crate::decode::{self, ApiDialect, Dialect};
use crate::error::EsmError;
use peer_http::lock;

const LOGIN_PATH: &str = "/www/core-service/rest/LoginService/login";
const LOGOUT_PATH: &str = "/www/core-service/rest/LoginService/logout";

/// A logged-in session.
#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) token: SecretString,
    pub(crate) dialect: Dialect,
    /// Increases with every login, so concurrent callers that all saw the same token refused
    /// log in again only once.
    pub(crate) generation: u64,
}

impl EsmClient {
    /// Logs in (again), replacing any current session.
    pub async fn login(&self) -> Result<(), EsmError> {
        let mut guard = self.inner.session.lock().await;
        let s = self.do_login().await?;
        *guard = Some(s);
        Ok(())
    }

    /// Ends the session; a no-op when not logged in. The session is forgotten even if the ESM
    /// cannot be told, so a later call logs in afresh.
    pub async fn logout(&self) -> Result<(), EsmError> {
        let Some(session) = self.inner.session.lock().await.take() else {
            return Ok(());
        };
        let token = session.token.expose_secret().to_owned();
        let body = Body::Form(vec![("authToken", token.clone()), ("alt", "json".into())]);
        let secrets = [token.as_str(), self.inner.cfg.password.expose_secret()];
        let url = self.url(LOGOUT_PATH);
        self.send("logout", &url, &body, &secrets).await?;
        tracing::debug!("logged out of ESM");
        Ok(())
    }

    /// The dialect in use, once logged in.
    pub async fn dialect(&self) -> Option<Dialect> {
        self.inner.session.lock().await.as_ref().map(|s| s.dialect)
    }

    /// The current session, logging in first when there is none.
    pub(crate) async fn session(&self) -> Result<Session, EsmError> {
        let mut guard = self.inner.session.lock().await;
        if let Some(s) = guard.as_ref() {
            return Ok(s.clone());
        }
        let s = self.do_login().await?;
        *guard = Some(s.clone());
        Ok(s)
    }

    /// Logs in again unless another task already did since `refused` was handed out.
    pub(crate) async fn relogin(&self, refused: u64) -> Result<Session, EsmError> {
        let mut guard = self.inner.session.lock().await;
        if let Some(s) = guard.as_ref()
            && s.generation != refused
        {
            return Ok(s.clone());
        }
        lock(&self.inner.stats).relogins += 1;
        tracing::info!("ESM refused the session token; logging in again");
        *guard = None;
        let s = self.do_login().await?;
        *guard = Some(s.clone());
        Ok(s)
    }

    async fn do_login(&self) -> Result<Session, EsmError> {
        const OP: &str = "login";
        let cfg = &self.inner.cfg;
        let password = cfg.password.expose_secret();
        let body = Body::Form(vec![
            ("login", cfg.username.clone()),
            ("password", password.to_owned()),
            ("alt", "json".into()),
        ]);
        let url = self.url(LOGIN_PATH);
        let (status, answer) = self.send(OP, &url, &body, &[password]).await?;
        // Detected before the answer is taken apart (a login answer is a few bytes).
        let detected = Dialect::detect(&answer);
        let token = match decode::unwrap_answer(OP, answer) {
            Ok(Some(Value::String(t))) if !t.trim().is_empty() => t,
            // Never echo the answer: it would be the token if it were only oddly shaped.
            _ => {
                return Err(EsmError::Decode {
                    operation: OP,
                    status,
                    message: "no token in the login answer".into(),
                });
            }
        };
        let dialect = match cfg.dialect {
            ApiDialect::Prefixed => Dialect::Prefixed,
            ApiDialect::Plain => Dialect::Plain,
            // An answer we could read but not place: the older, prefixed form is the safer bet.
            ApiDialect::Auto => detected.unwrap_or(Dialect::Prefixed),
        };
        let generation = {
            let mut g = lock(&self.inner.generation);
            *g += 1;
            *g
        };
        tracing::info!(dialect = ?dialect, "logged in to ESM");
        Ok(Session {
            token: SecretString::from(token),
            dialect,
            generation,
        })
    }
}
