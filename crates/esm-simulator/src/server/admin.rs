//! The simulator's own control endpoints (`/sim-admin/...`), outside ESM's API.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ADMIN_MAX_CREATE, Shared};

impl Shared {
    pub(super) fn admin(&self, action: &str, q: &[(String, String)]) -> Response {
        let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        let count = || {
            get("n")
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(1)
                .min(ADMIN_MAX_CREATE)
        };
        let body = match action {
            "touch" => {
                json!({"ok": get("id").is_some_and(|id| self.with_data(|d| d.touch_case(id)))})
            }
            "add-events" => {
                json!({"ok": get("id").is_some_and(|id| self.with_data(|d| d.add_events(id, count())))})
            }
            "add-cases" => json!({"ids": self.with_data(|d| d.add_cases(count()))}),
            "delete" => {
                json!({"ok": get("id").is_some_and(|id| self.with_data(|d| d.delete_case(id)))})
            }
            "counters" => json!(self.counters()),
            _ => {
                return (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"error": "unknown admin action"})),
                )
                    .into_response();
            }
        };
        axum::Json(body).into_response()
    }
}
