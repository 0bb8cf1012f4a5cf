//! The case and event services: `findAllIds`, `getResourceById(s)`, `getCaseEventIDs`,
//! `getSecurityEvents`.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::pages::{invalid_resource, page, poison_page};
use super::params::{Params, parse_long};
use super::{Endpoint, Shared, esm_list, wrap};

impl Shared {
    /// The JSON answer of a data call, or the error page ESM would send.
    pub(super) fn data_answer(&self, ep: Endpoint, p: &Params) -> Result<Vec<u8>, Response> {
        let value = match ep {
            Endpoint::FindAllIds => {
                let mut ids = self.read_data(|d| d.case_ids());
                let (limit, create, delete) = self.knobs(|k| {
                    (
                        k.listing_limit_once.take(),
                        std::mem::take(&mut k.create_after_listing),
                        std::mem::take(&mut k.delete_after_listing),
                    )
                });
                if let Some(n) = limit {
                    ids.truncate(n);
                }
                if create > 0 {
                    self.with_data(|d| d.add_cases(create));
                }
                for id in &delete {
                    self.with_data(|d| d.delete_case(id));
                }
                esm_list(ids.into_iter().map(Value::String).collect())
            }
            Endpoint::GetResourceById => {
                let id = p.required("resourceId")?;
                if self.knobs(|k| k.poison_cases.contains(id)) {
                    return Err(poison_page());
                }
                Some(
                    self.read_data(|d| d.case_json(id))
                        .ok_or_else(|| invalid_resource(id))?,
                )
            }
            Endpoint::GetResourcesByIds => {
                if !self.batch_api {
                    return Err(page(
                        StatusCode::NOT_FOUND,
                        "The requested resource is not available",
                    ));
                }
                let ids = p.all("ids");
                if self.knobs(|k| ids.iter().any(|id| k.poison_cases.contains(id))) {
                    return Err(poison_page());
                }
                // Unknown ids are skipped: the caller gets every case that exists.
                self.read_data(|d| esm_list(ids.iter().filter_map(|id| d.case_json(id)).collect()))
            }
            Endpoint::GetCaseEventIds => {
                let id = match p.first("caseId") {
                    Some(id) => id,
                    None => p.required("resourceId")?,
                };
                let ids = self
                    .read_data(|d| d.case_event_ids(id))
                    .ok_or_else(|| invalid_resource(id))?;
                esm_list(ids.into_iter().map(Value::from).collect())
            }
            Endpoint::GetSecurityEvents => {
                let ids = p
                    .all("ids")
                    .iter()
                    .map(|s| parse_long(s))
                    .collect::<Result<Vec<i64>, _>>()?;
                let (poisoned, hidden) = self.knobs(|k| {
                    (
                        ids.iter().any(|id| k.poison_events.contains(id)),
                        k.hidden_events.clone(),
                    )
                });
                if poisoned {
                    return Err(poison_page());
                }
                let ids: Vec<i64> = ids.into_iter().filter(|id| !hidden.contains(id)).collect();
                let start = p
                    .first("startMillis")
                    .map(parse_long)
                    .transpose()?
                    .unwrap_or(-1);
                let end = p
                    .first("endMillis")
                    .map(parse_long)
                    .transpose()?
                    .unwrap_or(-1);
                esm_list(self.read_data(|d| d.events_json_between(&ids, start, end)))
            }
            _ => None,
        };
        Ok(wrap(self.dialect, ep, value).to_string().into_bytes())
    }
}
