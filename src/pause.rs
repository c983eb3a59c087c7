//! Paused notebooks, remembered across restarts and reloads.
//!
//! A pause is a user's decision ("don't commit while I reorganise"), so a
//! daemon restart must not undo it. The list lives outside every notebook
//! (nothing to commit or ignore) in `$XDG_STATE_HOME/gitlockd/paused.json`
//! (`~/.local/state/gitlockd/paused.json`), keyed by the notebook's real
//! path, with the time a `pause --for` ends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Why the pause list could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PauseStoreError {
    /// Neither `XDG_STATE_HOME` nor `HOME` is set.
    #[error("cannot remember pauses across restarts: neither XDG_STATE_HOME nor HOME is set")]
    NoStateDir,
    /// Reading or writing the file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// "read", "write".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not what gitlockd writes.
    #[error("{} is not a valid pause list ({source}); delete it to start afresh", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
}

/// One remembered pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    /// When it ends by itself (Unix seconds); `None`: at `resume`.
    until: Option<u64>,
}

/// Serialises read-modify-write of the file within the daemon.
static FILE_LOCK: Mutex<()> = Mutex::new(());

/// Where the list lives: `$XDG_STATE_HOME/gitlockd/paused.json`, else
/// `~/.local/state/gitlockd/paused.json`.
pub fn store_path() -> Result<PathBuf, PauseStoreError> {
    let non_empty = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty("XDG_STATE_HOME") {
        return Ok(PathBuf::from(dir).join("gitlockd/paused.json"));
    }
    match non_empty("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".local/state/gitlockd/paused.json")),
        None => Err(PauseStoreError::NoStateDir),
    }
}

/// The remembered pause of the notebook at `root`: `Some(until)` when it is
/// paused (`until: None` = until resumed). An expired pause is forgotten.
pub fn load(root: &Path) -> Result<Option<Option<SystemTime>>, PauseStoreError> {
    let _guard = FILE_LOCK.lock();
    let path = store_path()?;
    let mut all = read(&path)?;
    let key = root.display().to_string();
    let Some(entry) = all.get(&key).copied() else {
        return Ok(None);
    };
    let until = entry.until.map(from_secs);
    if until.is_some_and(|t| t <= SystemTime::now()) {
        all.remove(&key);
        write(&path, &all)?;
        return Ok(None);
    }
    Ok(Some(until))
}

/// Remembers that the notebook at `root` is paused (until `until`).
pub fn save(root: &Path, until: Option<SystemTime>) -> Result<(), PauseStoreError> {
    let _guard = FILE_LOCK.lock();
    let path = store_path()?;
    let mut all = read(&path)?;
    all.insert(
        root.display().to_string(),
        Entry {
            until: until.map(to_secs),
        },
    );
    write(&path, &all)
}

/// Forgets the pause of the notebook at `root`.
pub fn clear(root: &Path) -> Result<(), PauseStoreError> {
    let _guard = FILE_LOCK.lock();
    let path = store_path()?;
    let mut all = read(&path)?;
    if all.remove(&root.display().to_string()).is_some() {
        write(&path, &all)?;
    }
    Ok(())
}

fn read(path: &Path) -> Result<BTreeMap<String, Entry>, PauseStoreError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| PauseStoreError::Corrupt {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(source) => Err(PauseStoreError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes the whole list atomically (temporary file, then rename).
fn write(path: &Path, all: &BTreeMap<String, Entry>) -> Result<(), PauseStoreError> {
    let io = |source| PauseStoreError::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let text = serde_json::to_vec_pretty(all).map_err(|e| io(std::io::Error::other(e)))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn to_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
        .unwrap_or(0)
}

fn from_secs(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}
