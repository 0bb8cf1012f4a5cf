//! `CONNECTOR_SEND_TO_DIRECTORY`: one JSON file per delivery, for an operator to preview or
//! to import by hand; needs no platform at all.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{debug, warn};

use super::{DeliveryError, DeliveryReport, Sink};
use crate::stix::Bundle;

/// Who wrote the file: the `connector` object of the envelope, and the applicant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryIdentity {
    /// `connector_user_id` from the registration; `None` when no platform was contacted.
    pub applicant_id: Option<String>,
    pub connector_id: String,
    pub name: String,
    pub scope: Vec<String>,
    pub validate_before_import: bool,
}

#[derive(Serialize)]
struct ConnectorHeader<'a> {
    id: &'a str,
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    /// pycti writes the raw `CONNECTOR_SCOPE` string here, not a list.
    scope: String,
    auto: bool,
    validate_before_import: bool,
}

#[derive(Serialize)]
struct Envelope<'a> {
    bundle_type: &'static str,
    applicant_id: Option<&'a str>,
    connector: ConnectorHeader<'a>,
    entities_types: [&'a str; 0],
    bundle: &'a Bundle,
    update: bool,
}

/// Writes `<prefix>-<YYYYmmdd-HHMMSS>-<unix_time>.json` files (UTC time), where `prefix` is
/// the connector name lowercased with spaces (and characters no file system accepts)
/// turned into `_`.
///
/// Two deliveries within the same second would get the same name: the second and later
/// ones get a counter suffix, `<prefix>-<YYYYmmdd-HHMMSS>-<unix_time>-<n>.json` (n = 1, 2,
/// ...), so no file is ever overwritten. Each file is written as `<name>.tmp`, flushed to
/// disk, then renamed, so a reader never sees a partial file. The counter is chosen by
/// looking at the directory: one connector per directory is assumed (as with pycti).
#[derive(Debug, Clone)]
pub struct DirectoryDelivery {
    dir: PathBuf,
    retention_days: u32,
    identity: DirectoryIdentity,
    prefix: String,
}

impl DirectoryDelivery {
    /// `retention_days`: files of ours older than this are deleted after each write; 0 keeps
    /// everything.
    pub fn new(path: impl Into<PathBuf>, retention_days: u32, identity: DirectoryIdentity) -> Self {
        let prefix = file_prefix(&identity.name);
        DirectoryDelivery {
            dir: path.into(),
            retention_days,
            identity,
            prefix,
        }
    }

    /// The file body: the `DIRECTORY_BUNDLE` envelope around the whole bundle.
    pub fn envelope(&self, bundle: &Bundle) -> Vec<u8> {
        let id = &self.identity;
        let env = Envelope {
            bundle_type: "DIRECTORY_BUNDLE",
            applicant_id: id.applicant_id.as_deref(),
            connector: ConnectorHeader {
                id: &id.connector_id,
                name: &id.name,
                kind: "EXTERNAL_IMPORT",
                scope: id.scope.join(","),
                auto: false,
                validate_before_import: id.validate_before_import,
            },
            entities_types: [],
            bundle,
            update: false,
        };
        // Strings, booleans and the STIX model only: no failure path.
        serde_json::to_vec(&env).expect("envelope always serialises")
    }

    /// Writes `body` as the file of a delivery made at `now`, then applies retention.
    /// Synchronous; `deliver` runs it on the blocking pool.
    pub fn write_at(
        &self,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<DeliveryReport, DeliveryError> {
        let io = |operation, path: &Path| {
            let path = path.to_owned();
            move |source| DeliveryError::Io {
                operation,
                path,
                source,
            }
        };
        fs::create_dir_all(&self.dir).map_err(io("create directory", &self.dir))?;
        let stem = format!(
            "{}-{}-{}",
            self.prefix,
            now.format("%Y%m%d-%H%M%S"),
            now.timestamp()
        );
        let mut n = 0u32;
        let final_path = loop {
            let name = if n == 0 {
                format!("{stem}.json")
            } else {
                format!("{stem}-{n}.json")
            };
            let p = self.dir.join(name);
            if !p.exists() {
                break p;
            }
            n += 1;
        };
        let mut tmp_name = final_path.clone().into_os_string();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let write = || -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(body)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(io("write", &tmp)(e));
        }
        fs::rename(&tmp, &final_path).map_err(io("rename", &final_path))?;
        // The rename is an entry in the directory: until the directory itself is on disk a
        // power loss can undo it, and the state would call delivered a bundle that is gone.
        // A failed sync is a failed delivery, so the cases are sent again by a later run.
        sync_dir(&self.dir).map_err(io("sync directory", &self.dir))?;
        debug!(path = %final_path.display(), bytes = body.len(), "bundle written to directory");
        if let Err(e) = self.apply_retention(now) {
            // Old files left behind do not make this delivery any less complete.
            warn!(error = %e, "directory retention failed");
        }
        Ok(DeliveryReport {
            messages: 1,
            bytes: body.len() as u64,
            path: Some(final_path),
        })
    }

    /// Deletes our own files (by name: `<prefix>-<date>-<time>-<unix>[-n].json`) whose
    /// `unix` time is more than `retention_days` before `now`; other files are never
    /// touched. Returns how many were deleted.
    pub fn apply_retention(&self, now: DateTime<Utc>) -> Result<usize, DeliveryError> {
        if self.retention_days == 0 {
            return Ok(0);
        }
        let cutoff = now.timestamp() - i64::from(self.retention_days) * 86_400;
        let entries = fs::read_dir(&self.dir).map_err(|source| DeliveryError::Io {
            operation: "list",
            path: self.dir.clone(),
            source,
        })?;
        let mut deleted = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(t) = name.to_str().and_then(|n| self.file_time(n)) else {
                continue;
            };
            if t < cutoff {
                let path = entry.path();
                fs::remove_file(&path).map_err(|source| DeliveryError::Io {
                    operation: "delete",
                    path: path.clone(),
                    source,
                })?;
                debug!(path = %path.display(), "deleted by retention");
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// The unix time in the name of one of our files; `None` for anything else.
    fn file_time(&self, name: &str) -> Option<i64> {
        let rest = name.strip_prefix(&self.prefix)?.strip_prefix('-')?;
        let rest = rest.strip_suffix(".json")?;
        let mut parts = rest.split('-');
        let date = parts.next()?;
        let time = parts.next()?;
        let unix = parts.next()?;
        let counter = parts.next();
        let digits = |s: &str, len: Option<usize>| {
            !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit())
                && len.is_none_or(|l| s.len() == l)
        };
        if parts.next().is_some()
            || !digits(date, Some(8))
            || !digits(time, Some(6))
            || !digits(unix, None)
            || counter.is_some_and(|c| !digits(c, None))
        {
            return None;
        }
        unix.parse().ok()
    }
}

impl Sink for DirectoryDelivery {
    /// Nothing goes to a queue: no expectations.
    fn expectations(&self, _bundle: &Bundle) -> u64 {
        0
    }

    async fn deliver(
        &mut self,
        bundle: &Bundle,
        _work_id: Option<&str>,
    ) -> Result<DeliveryReport, DeliveryError> {
        let body = self.envelope(bundle);
        let this = self.clone();
        let now = Utc::now();
        // File system calls block: keep them off the async workers.
        tokio::task::spawn_blocking(move || this.write_at(&body, now))
            .await
            .map_err(|e| DeliveryError::Io {
                operation: "write",
                path: self.dir.clone(),
                source: std::io::Error::other(e.to_string()),
            })?
    }
}

/// pycti's `name.lower().replace(" ", "_")`, also replacing what would escape the directory
/// or be refused by a file system.
/// Flushes a directory's entries (a rename, a new file) to disk. Unix only: elsewhere a
/// directory cannot be opened as a file, and the platform's own rename is what there is.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

pub fn file_prefix(connector_name: &str) -> String {
    connector_name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() || "/\\:*?\"<>|".contains(c) {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("arcsight-dir-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    /// The directory sync is a real operation whose failure is reported, not a no-op: a
    /// directory that is not there cannot be synced.
    #[cfg(unix)]
    #[test]
    fn sync_dir_reports_a_directory_it_cannot_sync() {
        let d = scratch("sync");
        assert!(sync_dir(&d).is_err());
        fs::create_dir_all(&d).unwrap();
        sync_dir(&d).unwrap();
        fs::remove_dir_all(&d).unwrap();
    }

    /// The write path with the syncs in it: the bundle ends under its final name, whole,
    /// with no `.tmp` left beside it.
    #[test]
    fn write_at_leaves_the_whole_file_under_its_final_name() {
        let d = scratch("write");
        let sink = DirectoryDelivery::new(
            &d,
            0,
            DirectoryIdentity {
                applicant_id: None,
                connector_id: "c".into(),
                name: "Test Sink".into(),
                scope: vec![],
                validate_before_import: false,
            },
        );
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let report = sink.write_at(b"{\"x\":1}", now).unwrap();
        let path = report.path.unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{\"x\":1}");
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["test_sink-20231114-221320-1700000000.json"]);
        fs::remove_dir_all(&d).unwrap();
    }
}
