//! The ledger file (`EngineConfig::ledger_path`): what the engine knew at its last quiet point,
//! so a restart resumes from that point instead of resynchronising the whole list.
//!
//! Layout: the magic line `arcsight-stream-ledger\n`, one JSON header line (format version,
//! stream id, list id, value column, policy, the acked position the ledger matches, whether a
//! full resync was under way, section lengths), the values the connector managed before a
//! resync in progress (u32 LE length + UTF-8 each), the `stream_core` ledger snapshot, and an
//! FNV-1a 64 checksum of everything before it. Written atomically (temporary file, fsync,
//! rename, fsync of the directory): a crash leaves the old file or the new one, never a mix.

use std::io::Write;
use std::path::{Path, PathBuf};

use opencti_client::stream::StreamPosition;
use serde::{Deserialize, Serialize};
use stream_core::ledger::Ledger;
use stream_core::policy::Policy;

const MAGIC: &[u8] = b"arcsight-stream-ledger\n";
const VERSION: u32 = 1;
/// A header line longer than this is not ours.
const MAX_HEADER: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("ledger file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ledger file {path} is not a valid ledger file: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Header {
    pub version: u32,
    pub stream_id: String,
    pub list_id: String,
    pub value_column: String,
    /// The policy's description: another policy gives other values for the same events.
    pub policy: String,
    pub start_from: Option<String>,
    pub recover_until: Option<String>,
    /// A full resync had started and not completed: the ledger is not to be resumed.
    pub resyncing: bool,
    pub prior_len: u64,
    pub ledger_len: u64,
}

/// Who the file is for (what must match for it to be resumed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub stream_id: String,
    pub list_id: String,
    pub value_column: String,
    pub policy: String,
}

pub(crate) fn policy_text(p: &Policy) -> String {
    format!("{p:?}")
}

/// What a file held.
pub(crate) struct Loaded {
    pub header: Header,
    /// Values managed before a resync in progress.
    pub prior: Vec<String>,
    pub ledger: Ledger,
}

impl Loaded {
    /// Same list and column: the values in the file were ours in this list.
    pub fn same_list(&self, id: &Identity) -> bool {
        self.header.list_id == id.list_id && self.header.value_column == id.value_column
    }

    /// Resumable as is: same stream, list, column and policy, a position, no resync in progress.
    pub fn resumable(&self, id: &Identity) -> bool {
        self.same_list(id)
            && self.header.stream_id == id.stream_id
            && self.header.policy == id.policy
            && self.header.start_from.is_some()
            && !self.header.resyncing
    }

    pub fn position(&self) -> Option<StreamPosition> {
        self.header.start_from.as_ref().map(|s| StreamPosition {
            start_from: Some(s.clone()),
            recover_until: self.header.recover_until.clone(),
        })
    }
}

fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The file's bytes.
pub(crate) fn encode(
    id: &Identity,
    position: Option<&StreamPosition>,
    resyncing: bool,
    prior: &[&str],
    ledger: &[u8],
) -> Vec<u8> {
    let mut prior_bytes = Vec::new();
    for v in prior {
        prior_bytes.extend((v.len() as u32).to_le_bytes());
        prior_bytes.extend(v.as_bytes());
    }
    let header = Header {
        version: VERSION,
        stream_id: id.stream_id.clone(),
        list_id: id.list_id.clone(),
        value_column: id.value_column.clone(),
        policy: id.policy.clone(),
        start_from: position.and_then(|p| p.start_from.clone()),
        recover_until: position.and_then(|p| p.recover_until.clone()),
        resyncing,
        prior_len: prior_bytes.len() as u64,
        ledger_len: ledger.len() as u64,
    };
    let mut out = MAGIC.to_vec();
    out.extend(serde_json::to_vec(&header).expect("a header serialises"));
    out.push(b'\n');
    out.extend(prior_bytes);
    out.extend(ledger);
    let sum = fnv64(&out);
    out.extend(sum.to_le_bytes());
    out
}

pub(crate) fn decode(path: &Path, bytes: &[u8], policy: Policy) -> Result<Loaded, SnapshotError> {
    let bad = |reason: &str| SnapshotError::Invalid {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let body = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("unknown format"))?;
    if bytes.len() < MAGIC.len() + 8 {
        return Err(bad("truncated"));
    }
    let (content, sum) = bytes.split_at(bytes.len() - 8);
    if fnv64(content) != u64::from_le_bytes(sum.try_into().expect("8 bytes")) {
        return Err(bad("checksum mismatch (truncated or corrupt)"));
    }
    let body = &body[..body.len() - 8];
    let nl = body
        .iter()
        .take(MAX_HEADER)
        .position(|&b| b == b'\n')
        .ok_or_else(|| bad("no header"))?;
    let header: Header =
        serde_json::from_slice(&body[..nl]).map_err(|e| bad(&format!("header: {e}")))?;
    if header.version != VERSION {
        return Err(bad(&format!("format version {}", header.version)));
    }
    let rest = &body[nl + 1..];
    let (pl, ll) = (header.prior_len as usize, header.ledger_len as usize);
    if pl.checked_add(ll) != Some(rest.len()) {
        return Err(bad("section lengths do not match the file"));
    }
    let (mut p, l) = rest.split_at(pl);
    let mut prior = Vec::new();
    while !p.is_empty() {
        if p.len() < 4 {
            return Err(bad("prior values truncated"));
        }
        let n = u32::from_le_bytes(p[..4].try_into().expect("4 bytes")) as usize;
        let v = p
            .get(4..4 + n)
            .ok_or_else(|| bad("prior values truncated"))?;
        prior.push(
            std::str::from_utf8(v)
                .map_err(|_| bad("prior value not UTF-8"))?
                .to_owned(),
        );
        p = &p[4 + n..];
    }
    let ledger = Ledger::restore(policy, l).map_err(|e| bad(&e.to_string()))?;
    Ok(Loaded {
        header,
        prior,
        ledger,
    })
}

/// Reads the file; `Ok(None)` when there is none.
pub(crate) async fn load(path: &Path, policy: Policy) -> Result<Option<Loaded>, SnapshotError> {
    let p = path.to_owned();
    let read = tokio::task::spawn_blocking(move || std::fs::read(&p))
        .await
        .map_err(|e| SnapshotError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?;
    match read {
        Ok(bytes) => decode(path, &bytes, policy).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SnapshotError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// What a ledger file holds, for `check`-like commands and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// The acked position the ledger matches (`None` while a resync was under way).
    pub position: Option<String>,
    /// A full resync had started and not completed.
    pub resyncing: bool,
    pub list_id: String,
    pub value_column: String,
    /// Indicators tracked, and values managed before a resync in progress.
    pub tracked: usize,
    pub prior: usize,
}

/// Reads and validates the file at `path` (`Ok(None)`: there is none).
pub fn peek(path: &Path) -> Result<Option<FileInfo>, SnapshotError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SnapshotError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let l = decode(path, &bytes, Policy::default())?;
    Ok(Some(FileInfo {
        position: l.header.start_from.clone(),
        resyncing: l.header.resyncing,
        list_id: l.header.list_id.clone(),
        value_column: l.header.value_column.clone(),
        tracked: l.ledger.tracked(),
        prior: l.prior.len(),
    }))
}

fn write_sync(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    let tmp = dir.join(name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // The rename itself is durable only once the directory is.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Replaces the file atomically.
pub(crate) async fn store(path: &Path, bytes: Vec<u8>) -> Result<(), SnapshotError> {
    let p = path.to_owned();
    tokio::task::spawn_blocking(move || write_sync(&p, &bytes))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(|source| SnapshotError::Io {
            path: path.to_owned(),
            source,
        })
}

/// The journal beside the ledger file (`<file>.owned`): every value sent to ESM as an add
/// since the file was last written, one JSON string a line. The file is rewritten at quiet
/// points only; a restart that cannot resume from it (a retention gap, a resync) still knows
/// these values as ours, so one deleted meanwhile is removed rather than taken for a foreign
/// entry. Emptied at each file write (the file then holds them, or they were removed).
pub(crate) fn journal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".owned");
    PathBuf::from(name)
}

fn io_error(path: &Path, source: std::io::Error) -> SnapshotError {
    SnapshotError::Io {
        path: path.to_owned(),
        source,
    }
}

async fn blocking<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, SnapshotError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(|e| io_error(path, e))
}

/// Appends `values` to the journal of the ledger file `path`, durably.
pub(crate) async fn journal_append(path: &Path, values: &[String]) -> Result<(), SnapshotError> {
    if values.is_empty() {
        return Ok(());
    }
    let mut text = String::new();
    for v in values {
        text.push_str(&serde_json::Value::from(v.as_str()).to_string());
        text.push('\n');
    }
    let j = journal_path(path);
    blocking(&j.clone(), move || {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&j)?;
        f.write_all(text.as_bytes())?;
        f.sync_data()
    })
    .await
}

/// Empties the journal (the ledger file was just written).
pub(crate) async fn journal_clear(path: &Path) -> Result<(), SnapshotError> {
    let j = journal_path(path);
    blocking(&j.clone(), move || match std::fs::remove_file(&j) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    })
    .await
}

/// The journal's values (none when there is no journal). A line that is not a JSON string (a
/// kill in the middle of an append) is skipped: its write was not sent yet.
pub(crate) async fn journal_load(path: &Path) -> Result<Vec<String>, SnapshotError> {
    let j = journal_path(path);
    let text = blocking(&j.clone(), move || match std::fs::read_to_string(&j) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        other => other,
    })
    .await?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<String>(l).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_journal_keeps_appended_values_skips_a_torn_line_and_empties() {
        let dir = std::env::temp_dir().join(format!("journal-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ledger.bin");
        assert!(journal_load(&file).await.unwrap().is_empty());
        let a = ["1.1.1.1".to_string(), "http://x/a\nb'c\"".to_string()];
        journal_append(&file, &a).await.unwrap();
        journal_append(&file, &["2.2.2.2".to_string()])
            .await
            .unwrap();
        // A kill in the middle of an append leaves half a line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(journal_path(&file))
            .unwrap();
        f.write_all(b"\"3.3.3").unwrap();
        assert_eq!(
            journal_load(&file).await.unwrap(),
            [a[0].clone(), a[1].clone(), "2.2.2.2".to_string()]
        );
        journal_clear(&file).await.unwrap();
        journal_clear(&file).await.unwrap();
        assert!(journal_load(&file).await.unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn id() -> Identity {
        Identity {
            stream_id: "s".into(),
            list_id: "L".into(),
            value_column: "value".into(),
            policy: policy_text(&Policy::default()),
        }
    }

    #[test]
    fn round_trip_and_every_corruption_is_refused() {
        let ledger = Ledger::new(Policy::default()).snapshot();
        let pos = StreamPosition {
            start_from: Some("5-0".into()),
            recover_until: None,
        };
        let bytes = encode(&id(), Some(&pos), false, &["a", "bé"], &ledger);
        let p = Path::new("x");
        let l = decode(p, &bytes, Policy::default()).unwrap();
        assert_eq!(l.prior, ["a", "bé"]);
        assert_eq!(l.position(), Some(pos));
        assert!(l.resumable(&id()));
        let other = Identity {
            policy: "other".into(),
            ..id()
        };
        assert!(!l.resumable(&other) && l.same_list(&other));
        for cut in [0, 5, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                decode(p, &bytes[..cut], Policy::default()).is_err(),
                "{cut}"
            );
        }
        let mut flipped = bytes.clone();
        let at = flipped.len() - 12;
        flipped[at] ^= 1;
        assert!(decode(p, &flipped, Policy::default()).is_err());
    }
}
