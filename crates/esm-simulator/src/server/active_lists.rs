//! The ActiveListService: `findAllIds`, `getResourceById`, `getEntries`, `addEntries`,
//! `deleteEntries`, `clearEntries`, in both dialects (stream-arcsight.md 3.3, 3.4).

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::pages::{html, server_error, tomcat_page};
use super::params::Params;
use super::{Endpoint, Shared, esm_list, lock, wrap};
use crate::ActiveListCall;
use crate::active_list::WriteError;

const NOT_FOUND: &str =
    "com.arcsight.product.manager.resource.service.exception.ResourceNotFoundException";

/// ESM's page for an unknown Active List id: HTTP 500 naming `ResourceNotFoundException`.
fn unknown_list(id: &str) -> Response {
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        tomcat_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!(
                "{NOT_FOUND}: Resource not found: [{}] (ActiveList)",
                super::pages::escape_html(id)
            ),
        ),
    )
}

/// `columns` and the rows of `entryList` from the request's `entryList` object, accepting a
/// scalar where a list of one is expected.
fn entry_list(body: &[u8]) -> Result<(Vec<String>, Vec<Vec<String>>), Response> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let inner = v.as_object().and_then(|m| m.values().next());
    let list = inner
        .and_then(Value::as_object)
        .and_then(|m| {
            m.iter()
                .find(|(k, _)| k.rsplit('.').next() == Some("entryList"))
        })
        .map(|(_, v)| v)
        .ok_or_else(|| server_error("java.lang.IllegalArgumentException: entryList is required"))?;
    let strings = |v: Option<&Value>| -> Vec<String> {
        let one = |x: &Value| match x {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        match v {
            None => Vec::new(),
            Some(Value::Array(a)) => a.iter().map(one).collect(),
            Some(x) => vec![one(x)],
        }
    };
    let columns = strings(list.get("columns"));
    let rows = match list.get("entryList") {
        None => Vec::new(),
        Some(Value::Array(a)) => a.iter().map(|e| strings(e.get("entry"))).collect(),
        Some(e) => vec![strings(e.get("entry"))],
    };
    Ok((columns, rows))
}

fn write_error(e: WriteError) -> Response {
    server_error(&match e {
        WriteError::UnknownColumn(c) => format!(
            "java.lang.IllegalArgumentException: Column {c} is not a field of the Active List"
        ),
        WriteError::NoKeyColumn => {
            "java.lang.IllegalArgumentException: the key field is missing".to_string()
        }
        WriteError::RowWidth => {
            "java.lang.IllegalArgumentException: entry size does not match columns".to_string()
        }
    })
}

impl Shared {
    /// The answer body of an Active List call (`None`: 204 No Content), or its error page.
    pub(super) fn active_list_answer(
        &self,
        ep: Endpoint,
        p: &Params,
        body: &[u8],
    ) -> Result<Option<Vec<u8>>, Response> {
        let now = self.now_ms();
        if ep == Endpoint::ActFindAllIds {
            let ids = lock(&self.lists)
                .keys()
                .cloned()
                .map(Value::String)
                .collect();
            self.record_call(ep, "", 0);
            return Ok(Some(
                wrap(self.dialect, ep, esm_list(ids))
                    .to_string()
                    .into_bytes(),
            ));
        }
        let id = p.required("resourceId")?.to_owned();
        let mut lists = lock(&self.lists);
        let Some(list) = lists.get_mut(&id) else {
            drop(lists);
            self.record_call(ep, &id, 0);
            return Err(unknown_list(&id));
        };
        list.expire(now);
        let value = match ep {
            Endpoint::ActGetResourceById => {
                let c = &list.cfg;
                let fields = c.fields.iter().cloned().map(Value::String).collect();
                let mut m = Map::new();
                m.insert("resourceid".into(), json!(c.id));
                m.insert("name".into(), json!(c.name));
                m.insert("typeName".into(), json!("ActiveList"));
                if let Some(f) = esm_list(fields) {
                    m.insert("fieldNames".into(), f);
                }
                m.insert("keyFields".into(), json!(c.fields.first()));
                m.insert("entryCount".into(), json!(list.len()));
                m.insert("capacity".into(), json!(c.capacity));
                m.insert(
                    "timeToLive".into(),
                    json!(c.ttl.map(|t| t.as_secs()).unwrap_or(0)),
                );
                let n = list.len();
                drop(lists);
                self.record_call(ep, &id, n);
                Value::Object(m)
            }
            Endpoint::ActGetEntries => {
                let fields = list.cfg.fields.iter().cloned().map(Value::String).collect();
                let rows: Vec<Value> = list
                    .rows()
                    .into_iter()
                    .map(|r| {
                        let vals = r.into_iter().map(Value::String).collect();
                        json!({"entry": esm_list(vals).unwrap_or(Value::String(String::new()))})
                    })
                    .collect();
                drop(lists);
                self.record_call(ep, &id, rows.len());
                let mut m = Map::new();
                if let Some(f) = esm_list(fields) {
                    m.insert("columns".into(), f);
                }
                if let Some(e) = esm_list(rows) {
                    m.insert("entryList".into(), e);
                }
                Value::Object(m)
            }
            Endpoint::ActAddEntries | Endpoint::ActDeleteEntries => {
                let (columns, rows) = entry_list(body)?;
                let n = rows.len();
                let poisoned = self.knobs(|k| {
                    !k.poison_values.is_empty()
                        && rows.iter().flatten().any(|v| k.poison_values.contains(v))
                });
                if poisoned {
                    drop(lists);
                    self.bump("fault.poison_value");
                    self.record_call(ep, &id, n);
                    return Err(server_error(
                        "java.lang.IllegalArgumentException: an entry value is not accepted",
                    ));
                }
                let aligned = list.align(&columns, &rows).map_err(write_error)?;
                if ep == Endpoint::ActAddEntries {
                    list.add(aligned, now);
                } else {
                    let keys: Vec<String> =
                        aligned.into_iter().map(|mut r| r.swap_remove(0)).collect();
                    list.delete(&keys);
                }
                drop(lists);
                self.record_call(ep, &id, n);
                return Ok(None);
            }
            Endpoint::ActClearEntries => {
                list.clear();
                drop(lists);
                self.record_call(ep, &id, 0);
                return Ok(None);
            }
            _ => return Err(server_error("not an Active List operation")),
        };
        Ok(Some(
            wrap(self.dialect, ep, Some(value)).to_string().into_bytes(),
        ))
    }

    fn record_call(&self, ep: Endpoint, list: &str, entries: usize) {
        let mut calls = lock(&self.act_calls);
        if calls.len() >= super::LOG_CAPACITY {
            calls.pop_front();
        }
        calls.push_back(ActiveListCall {
            operation: ep.name().to_owned(),
            list_id: list.to_owned(),
            entries,
        });
    }
}
