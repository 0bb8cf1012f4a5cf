//! The ActiveListService (stream-arcsight.md 3.3, 3.4): a list's description, its entries, and
//! batched writes.
//!
//! Every call goes through the client's one request path (the transport's `request`): the
//! shared session (login in a POST body, dialect detected from the login answer), one fresh
//! login when the token is refused, retries with backoff and `Retry-After`, HTML and
//! undecodable answers as errors, reads bounded by `max_response_bytes`, and error text
//! redacted of the password and the token. The token travels in the JSON body, never in the
//! URL. Published as `esm_client::active_lists`.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::task::JoinSet;

use crate::client::EsmClient;
use crate::decode::{self, Service};
use crate::error::EsmError;
use crate::model::{as_i64, as_list, as_string};

/// A batch's rows, held by its task and by the write that waits for it.
type SharedRows = Arc<Vec<Vec<String>>>;

/// Entries per `addEntries` / `deleteEntries` request unless configured otherwise. ESM documents
/// no limit (scripts send thousands per call); 500 keeps one request's body around 50 KiB for
/// indicator values, well under any proxy's body limit, while 20,000 writes cost 40 requests.
pub const DEFAULT_BATCH_SIZE: usize = 500;

/// Settings of the Active List service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveListConfig {
    /// Most entries one write request carries (default [`DEFAULT_BATCH_SIZE`]; 0 counts as 1).
    /// How many requests run at once is the client's `concurrency`, shared with its other calls.
    pub batch_size: usize,
}

impl Default for ActiveListConfig {
    fn default() -> Self {
        ActiveListConfig {
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }
}

/// An Active List as `getResourceById` describes it. Only `fieldNames` is attested by a public
/// client; the other fields are read when the answer has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveListInfo {
    /// The resource id (as the answer gives it, else as asked).
    pub id: String,
    pub name: Option<String>,
    /// `typeName` (`ActiveList`).
    pub type_name: Option<String>,
    /// `fieldNames`, in the list's order: the columns an entry may carry.
    pub fields: Vec<String>,
    /// `keyFields`: the fields ESM matches entries by (upsert, delete).
    pub key_fields: Vec<String>,
    /// Most entries kept in memory; beyond it ESM evicts a random one (stream-arcsight.md 3.6).
    pub capacity: Option<u64>,
    pub entry_count: Option<u64>,
    /// `timeToLive` as given (seconds in the simulator; 0 = none). UNVERIFIED on a real ESM.
    pub time_to_live: Option<u64>,
}

/// The entries of a list, as `getEntries` answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListEntries {
    /// The order of the values in every row (the answer's `columns`).
    pub columns: Vec<String>,
    /// One row per entry, `columns.len()` values each (missing trailing values read as `""`)
    /// when the answer named its columns.
    pub rows: Vec<Vec<String>>,
    /// Entries left out: more values than columns, or a value beyond the accepted size.
    pub skipped: usize,
}

impl ListEntries {
    /// The position of a column in every row.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Every value of a column (nothing when the list has no such column).
    pub fn values<'a>(&'a self, column: &str) -> impl Iterator<Item = &'a str> + 'a {
        let pos = self.column(column);
        self.rows
            .iter()
            .filter_map(move |r| pos.and_then(|p| r.get(p)).map(String::as_str))
    }

    /// Every value of a column, moved out of the rows rather than copied (nothing when the
    /// list has no such column): a whole list's values, without a second copy of them.
    pub fn into_values(self, column: &str) -> impl Iterator<Item = String> {
        let pos = self.column(column);
        self.rows
            .into_iter()
            .filter_map(move |mut r| pos.and_then(|p| r.get_mut(p)).map(std::mem::take))
    }
}

/// The entries of a `getEntries` answer's text (2xx, not HTML), decoded as
/// [`ActiveLists::get_entries`] decodes it. For benchmarks and tests that measure the decoding
/// without a server; errors are [`EsmError::Decode`].
#[doc(hidden)]
pub fn decode_entries_answer(text: &str) -> Result<ListEntries, EsmError> {
    super::entries::decode_body("getEntries", 200, text)
}

/// An Active List failure. None holds a password or a token: ESM's own text comes through
/// [`EsmError`], redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActiveListError {
    /// ESM knows no resource with this id (`ResourceNotFoundException`,
    /// `InvalidResourceIDException`, or an empty answer).
    #[error("ESM has no Active List with resource id {list_id:?}")]
    NotFound { list_id: String },

    /// The id names a resource that is not an Active List.
    #[error("ESM resource {list_id:?} is a {type_name}, not an Active List")]
    NotAList { list_id: String, type_name: String },

    /// The column is not one of the list's fields.
    #[error("Active List {list_id:?} has no field {column:?} (its fields: {})", fields_text(.fields))]
    UnknownColumn {
        list_id: String,
        column: String,
        fields: Vec<String>,
    },

    /// A write without columns (nothing to say which field a value is for).
    #[error("an Active List write needs at least one column")]
    NoColumns,

    /// Entries whose number of values differs from the number of columns (never sent).
    #[error("an Active List entry has {values} values for {columns} columns")]
    RowWidth { columns: usize, values: usize },

    /// A 2xx answer that is not the documented answer of a write (204, or 200 with an empty or
    /// `<op>Response` body): whatever it is, ESM did not say the entries were written.
    #[error("ESM {operation}: HTTP {status}: not the answer of a successful write")]
    UnexpectedAnswer {
        operation: &'static str,
        status: u16,
    },

    #[error(transparent)]
    Esm(#[from] EsmError),
}

fn fields_text(fields: &[String]) -> String {
    if fields.is_empty() {
        "none".to_owned()
    } else {
        fields.join(", ")
    }
}

impl ActiveListError {
    /// Worth retrying later with the same entries: only what [`EsmError::is_transient`] says
    /// (outage, timeout, 429, 5xx). A missing list or column repeats identically.
    pub fn is_transient(&self) -> bool {
        match self {
            ActiveListError::Esm(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// A batch ESM did not acknowledge, with exactly the rows it held, so the caller can retry
/// those and only those.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedBatch {
    pub rows: Vec<Vec<String>>,
    pub error: ActiveListError,
}

/// What a batched write achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Batches sent (each one request, plus its retries and at most one fresh login).
    pub batches: usize,
    /// Rows of the batches ESM acknowledged.
    pub written: usize,
    /// Batches not acknowledged (and rows refused before sending), in the order given.
    pub failed: Vec<FailedBatch>,
}

impl WriteReport {
    /// Every row was acknowledged.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }

    /// The rows of every failed batch.
    pub fn failed_rows(&self) -> impl Iterator<Item = &Vec<String>> {
        self.failed.iter().flat_map(|f| f.rows.iter())
    }
}

/// The Active List service of one client: clones share the client's session, counters and
/// concurrency limit.
#[derive(Debug, Clone)]
pub struct ActiveLists {
    client: EsmClient,
    cfg: ActiveListConfig,
}

impl EsmClient {
    /// The Active List service on this client's session.
    pub fn active_lists(&self, cfg: ActiveListConfig) -> ActiveLists {
        ActiveLists {
            client: self.clone(),
            cfg,
        }
    }

    /// One `addEntries` / `deleteEntries` request.
    async fn write_batch(
        &self,
        op: &'static str,
        list_id: &str,
        columns: &[String],
        rows: &[Vec<String>],
    ) -> Result<(), ActiveListError> {
        let entries: Vec<Value> = rows.iter().map(|r| json!({ "entry": r })).collect();
        let fields = vec![
            ("resourceId", json!(list_id)),
            (
                "entryList",
                json!({ "columns": columns, "entryList": entries }),
            ),
        ];
        let (status, answer) = self
            .request(Service::ActiveList, op, fields)
            .await
            .map_err(|e| list_error(list_id, e))?;
        // siemkit expects exactly 204, pyasesm 200 or 204; a 200 must still look like ESM's
        // answer, not like something a proxy or a portal sent instead.
        let acknowledged = match status {
            204 => true,
            200 => answer.is_null() || decode::unwrap_answer(op, answer).is_ok(),
            _ => false,
        };
        if acknowledged {
            Ok(())
        } else {
            Err(ActiveListError::UnexpectedAnswer {
                operation: op,
                status,
            })
        }
    }
}

impl ActiveLists {
    /// The list's description (`getResourceById`).
    pub async fn get_list(&self, list_id: &str) -> Result<ActiveListInfo, ActiveListError> {
        const OP: &str = "getResourceById";
        let (status, answer) = self
            .client
            .request(
                Service::ActiveList,
                OP,
                vec![("resourceId", json!(list_id))],
            )
            .await
            .map_err(|e| list_error(list_id, e))?;
        match decode::unwrap_answer(OP, answer).map_err(|message| EsmError::Decode {
            operation: OP,
            status,
            message,
        })? {
            Some(Value::Object(obj)) => list_info(list_id, &obj),
            None => Err(ActiveListError::NotFound {
                list_id: list_id.to_owned(),
            }),
            Some(_) => Err(EsmError::Decode {
                operation: OP,
                status,
                message: "the answer is not a resource object".into(),
            }
            .into()),
        }
    }

    /// Checks, before any write, that the list exists, is an Active List, and has
    /// `value_column` among its fields; the description on success.
    pub async fn check_list(
        &self,
        list_id: &str,
        value_column: &str,
    ) -> Result<ActiveListInfo, ActiveListError> {
        let info = self.get_list(list_id).await?;
        if !info.fields.iter().any(|f| f == value_column) {
            return Err(ActiveListError::UnknownColumn {
                list_id: list_id.to_owned(),
                column: value_column.to_owned(),
                fields: info.fields,
            });
        }
        Ok(info)
    }

    /// Every entry of the list (`getEntries` has no paging: the whole list in one answer, read
    /// up to the client's `max_response_bytes`).
    pub async fn get_entries(&self, list_id: &str) -> Result<ListEntries, ActiveListError> {
        const OP: &str = "getEntries";
        // Decoded from the text into rows, never into a `Value` tree (see `entries`).
        let (_status, entries) = self
            .client
            .request_with(
                Service::ActiveList,
                OP,
                vec![("resourceId", json!(list_id))],
                super::entries::decode_body,
            )
            .await
            .map_err(|e| list_error(list_id, e))?;
        Ok(entries)
    }

    /// Adds (or, for an existing key, updates) entries: `rows` hold the values in `columns`
    /// order. Sent in batches of `batch_size`, concurrently up to the client's `concurrency`.
    /// Keys should be distinct: batches run in no set order.
    pub async fn add_entries<S: AsRef<str>>(
        &self,
        list_id: &str,
        columns: &[S],
        rows: Vec<Vec<String>>,
    ) -> WriteReport {
        self.write("addEntries", list_id, columns, rows).await
    }

    /// Deletes entries by key, batched as [`ActiveLists::add_entries`].
    pub async fn delete_entries<S: AsRef<str>>(
        &self,
        list_id: &str,
        columns: &[S],
        rows: Vec<Vec<String>>,
    ) -> WriteReport {
        self.write("deleteEntries", list_id, columns, rows).await
    }

    async fn write<S: AsRef<str>>(
        &self,
        op: &'static str,
        list_id: &str,
        columns: &[S],
        rows: Vec<Vec<String>>,
    ) -> WriteReport {
        let mut report = WriteReport::default();
        if rows.is_empty() {
            return report;
        }
        let columns: Vec<String> = columns.iter().map(|c| c.as_ref().to_owned()).collect();
        if columns.is_empty() {
            report.failed.push(FailedBatch {
                rows,
                error: ActiveListError::NoColumns,
            });
            return report;
        }
        let (good, bad): (Vec<_>, Vec<_>) =
            rows.into_iter().partition(|r| r.len() == columns.len());
        if let Some(first) = bad.first() {
            report.failed.push(FailedBatch {
                error: ActiveListError::RowWidth {
                    columns: columns.len(),
                    values: first.len(),
                },
                rows: bad,
            });
        }
        let size = self.cfg.batch_size.max(1);
        let columns = Arc::new(columns);
        let list: Arc<str> = Arc::from(list_id);
        let mut set = JoinSet::new();
        // The task and this map share each batch, so a failed (or panicked) batch's rows come
        // back to the caller without a copy being kept for the ones that succeed.
        let mut pending: HashMap<tokio::task::Id, (usize, SharedRows)> = HashMap::new();
        let mut rows = good.into_iter();
        for index in 0.. {
            let batch: Vec<Vec<String>> = rows.by_ref().take(size).collect();
            if batch.is_empty() {
                break;
            }
            let batch = Arc::new(batch);
            let (client, list, columns, rows) = (
                self.client.clone(),
                Arc::clone(&list),
                Arc::clone(&columns),
                Arc::clone(&batch),
            );
            let handle = set.spawn(async move {
                let _permit = client.inner.permits.clone().acquire_owned().await;
                client.write_batch(op, &list, &columns, &rows).await
            });
            pending.insert(handle.id(), (index, batch));
        }
        let mut failed = Vec::new();
        while let Some(joined) = set.join_next_with_id().await {
            let (id, result) = match joined {
                Ok((id, r)) => (id, r),
                Err(e) => {
                    tracing::error!(operation = op, error = %e, "an Active List write task ended abnormally");
                    let err = EsmError::Aborted { operation: op };
                    (e.id(), Err(err.into()))
                }
            };
            let Some((index, batch)) = pending.remove(&id) else {
                continue;
            };
            let batch = Arc::try_unwrap(batch).unwrap_or_else(|shared| (*shared).clone());
            report.batches += 1;
            match result {
                Ok(()) => report.written += batch.len(),
                Err(error) => failed.push((index, FailedBatch { rows: batch, error })),
            }
        }
        failed.sort_by_key(|(i, _)| *i);
        if let Some((_, first)) = failed.first() {
            // One line per call, not per batch: an outage fails every batch the same way.
            tracing::warn!(
                operation = op,
                list = %list_id,
                failed_batches = failed.len(),
                failed_entries = failed.iter().map(|(_, f)| f.rows.len()).sum::<usize>(),
                written = report.written,
                transient = first.error.is_transient(),
                error = %first.error,
                "Active List write incomplete"
            );
        }
        report.failed.extend(failed.into_iter().map(|(_, f)| f));
        report
    }
}

/// ESM's answer for an unknown id, as [`ActiveListError::NotFound`]; other errors as they are.
fn list_error(list_id: &str, e: EsmError) -> ActiveListError {
    let missing = match &e {
        EsmError::ErrorPage {
            exception: Some(x), ..
        } => {
            let x = x.to_ascii_lowercase();
            x.contains("resourcenotfound") || x.contains("invalidresourceid")
        }
        _ => false,
    };
    if missing {
        ActiveListError::NotFound {
            list_id: list_id.to_owned(),
        }
    } else {
        ActiveListError::Esm(e)
    }
}

/// `name` itself or any `<prefix>.name`: the answer's inner keys may carry the prefix too.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.rsplit_once('.').is_some_and(|(_, n)| n == name))
            .map(|(_, v)| v)
    })
}

fn strings(v: Option<&Value>) -> Vec<String> {
    as_list(v)
        .into_iter()
        .filter_map(as_string)
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn count(v: Option<&Value>) -> Option<u64> {
    v.and_then(as_i64).and_then(|n| u64::try_from(n).ok())
}

fn list_info(list_id: &str, obj: &Map<String, Value>) -> Result<ActiveListInfo, ActiveListError> {
    let text = |k| {
        field(obj, k)
            .and_then(as_string)
            .map(|s| s.trim().to_owned())
    };
    let type_name = text("typeName").filter(|t| !t.is_empty());
    if let Some(t) = &type_name {
        let norm: String = t.chars().filter(|c| !c.is_whitespace()).collect();
        if !norm.eq_ignore_ascii_case("ActiveList") {
            return Err(ActiveListError::NotAList {
                list_id: list_id.to_owned(),
                type_name: t.clone(),
            });
        }
    }
    let id = text("resourceid")
        .or_else(|| {
            field(obj, "reference")
                .and_then(|r| r.get("id"))
                .and_then(as_string)
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| list_id.to_owned());
    Ok(ActiveListInfo {
        id,
        name: text("name"),
        type_name,
        fields: strings(field(obj, "fieldNames")),
        key_fields: strings(field(obj, "keyFields")),
        capacity: count(field(obj, "capacity")),
        entry_count: count(field(obj, "entryCount")),
        time_to_live: count(field(obj, "timeToLive")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `return` value `ret` as ESM sends it (prefixed dialect), decoded as `get_entries`
    /// decodes an answer's text; the error's message.
    fn decode_entries(ret: Option<Value>) -> Result<ListEntries, String> {
        let text = match ret {
            Some(ret) => json!({"act.getEntriesResponse": {"act.return": ret}}).to_string(),
            None => String::new(),
        };
        super::super::entries::decode_body("getEntries", 200, &text).map_err(|e| e.to_string())
    }

    fn rows(e: &ListEntries) -> Vec<Vec<&str>> {
        e.rows
            .iter()
            .map(|r| r.iter().map(String::as_str).collect())
            .collect()
    }

    #[test]
    fn entries_decode_in_every_rendering() {
        let many = json!({"columns": ["value", "type"], "entryList": [
            {"entry": ["198.51.100.1", "ipv4-addr"]}, {"entry": ["a.example", ""]}]});
        let e = decode_entries(Some(many)).unwrap();
        assert_eq!(rows(&e), [["198.51.100.1", "ipv4-addr"], ["a.example", ""]]);
        assert_eq!(e.values("type").collect::<Vec<_>>(), ["ipv4-addr", ""]);
        assert_eq!(
            e.clone().into_values("value").collect::<Vec<_>>(),
            ["198.51.100.1", "a.example"]
        );
        assert_eq!(e.into_values("nope").count(), 0);

        // One row: a bare object. One column: a bare string (and a bare column name).
        let one = json!({"act.columns": "value", "act.entryList": {"entry": "198.51.100.1"}});
        let e = decode_entries(Some(one)).unwrap();
        assert_eq!(e.columns, ["value"]);
        assert_eq!(rows(&e), [["198.51.100.1"]]);

        for empty in [
            json!({"columns": ["value"]}),
            json!({"columns": ["value"], "entryList": ""}),
            json!({"columns": ["value"], "entryList": []}),
        ] {
            let e = decode_entries(Some(empty.clone())).unwrap();
            assert!(e.rows.is_empty() && e.skipped == 0, "{empty}");
        }
        assert_eq!(decode_entries(None).unwrap(), ListEntries::default());
        assert!(decode_entries(Some(json!(["x"]))).is_err());
    }

    #[test]
    fn odd_entries_are_padded_or_skipped_not_misread() {
        let v = json!({"columns": ["value", "type"], "entryList": [
            {"entry": "short"}, {"entry": ["a", "b", "c"]}, {"entry": {"x": 1}}, {"entry": [1, null]}]});
        let e = decode_entries(Some(v)).unwrap();
        assert_eq!(rows(&e), [["short", ""], ["1", ""]]);
        assert_eq!(e.skipped, 2);
    }

    #[test]
    fn unknown_resource_pages_mean_not_found() {
        let page = |x: &str| EsmError::ErrorPage {
            operation: "getEntries",
            status: 500,
            exception: Some(x.into()),
        };
        for x in [
            "com.arcsight.x.ResourceNotFoundException: Resource not found: [L] (ActiveList)",
            "com.arcsight.x.InvalidResourceIDException: Invalid resource ID: [L]",
        ] {
            assert!(matches!(
                list_error("L", page(x)),
                ActiveListError::NotFound { .. }
            ));
            // Retrying an unknown id only repeats the failure.
            assert!(!page(x).is_transient(), "{x}");
        }
        let other = list_error("L", page("java.lang.IllegalStateException: busy"));
        assert!(other.is_transient(), "{other:?}");
    }
}
